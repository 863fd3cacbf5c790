/* test_block.c — mlog_client_set_block() (spool/mlog.h): a binding's own
 * client block replaces metadata.c_client in the events it spools, the
 * block's name is refused as a user key, bad names and JSON are refused
 * with a sentence, and NULL, NULL brings c_client back.  Real spool on
 * disk (sync durability), read back with the library's JSON encoder. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "codec/json.h"
#include <spool/mlog.h>
#include <spool/spool.h>

#include "harness.h"
#include "spawn_util.h"

static struct th_dir dir;
static struct mlog_client *c;

static void setup(void)
{
	su_clear_env();
	th_dir_make(&dir, "block");
	char err[MLOG_ERROR_MAX];
	ck_assert_msg(mlog_client_new(&(struct mlog_config){.spool_dir = dir.spool,
	                                                    .durability = "sync",
	                                                    .spawn_agent = MLOG_OFF},
	                              &c, err, sizeof(err)) == 0,
	              "%s", err);
}

static void teardown(void)
{
	mlog_client_free(c);
	th_dir_remove(&dir);
}

/* The metadata of every pending event, in order (a JSON array). */
static json_t *spooled_metadata(void)
{
	json_t *events = su_spool_events(dir.spool);
	json_t *arr = json_array();
	size_t i;
	json_t *ev;
	json_array_foreach(events, i, ev)
		json_array_append(arr, json_object_get(ev, "metadata"));
	json_decref(events);
	return arr;
}

START_TEST(test_block_replaces_c_client)
{
	const char *block = "{\"hostname\": \"h\", \"pid\": 7, \"python_version\": \"3.11.2\", "
	                    "\"nested\": {\"a\": [1, 2.5, true, null]}}";
	char err[MLOG_ERROR_MAX];
	ck_assert_msg(mlog_client_set_block(c, "python_client", block, err, sizeof(err)) == 0, "%s",
	              err);
	struct mlog_kv kv[] = {{.key = "frame", .type = MLOG_KV_INT, .i = 42}};
	struct mlog_result r = mlog_client_send(
	    c,
	    &(struct mlog_opts){
	        .metadata = kv, .nmetadata = 1, .metadata_json = "{\"t\": \"M31\"}"},
	    "one", 3);
	ck_assert_msg(r.ok, "%s", r.error);
	/* the binding sets it again (a new pid after fork): the next event has it */
	ck_assert_int_eq(mlog_client_set_block(c, "python_client", "{\"pid\": 8}", NULL, 0), 0);
	ck_assert(mlog_client_send(c, NULL, "two", 3).ok);
	/* NULL, NULL: c_client again */
	ck_assert_int_eq(mlog_client_set_block(c, NULL, NULL, NULL, 0), 0);
	ck_assert(mlog_client_send(c, NULL, "three", 5).ok);

	json_t *m = spooled_metadata();
	ck_assert_uint_eq(json_array_size(m), 3);
	json_t *want = json_loads(block, 0, NULL);
	json_t *m0 = json_array_get(m, 0);
	ck_assert(json_equal(json_object_get(m0, "python_client"), want));
	ck_assert_ptr_null(json_object_get(m0, "c_client"));
	ck_assert_int_eq(json_integer_value(json_object_get(m0, "frame")), 42);
	ck_assert_str_eq(json_string_value(json_object_get(m0, "t")), "M31");
	ck_assert_uint_eq(json_object_size(m0), 3);
	json_t *m1 = json_array_get(m, 1);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_object_get(m1, "python_client"), "pid")), 8);
	ck_assert_uint_eq(json_object_size(m1), 1);
	json_t *m2 = json_array_get(m, 2);
	ck_assert_ptr_null(json_object_get(m2, "python_client"));
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_object_get(m2, "c_client"), "pid")), getpid());
	json_decref(want);
	json_decref(m);
}
END_TEST

START_TEST(test_block_name_is_refused_as_user_key)
{
	ck_assert_int_eq(mlog_client_set_block(c, "python_client", "{}", NULL, 0), 0);
	struct mlog_kv kv[] = {{.key = "python_client", .type = MLOG_KV_STR, .s = "x"}};
	struct mlog_result r =
	    mlog_client_send(c, &(struct mlog_opts){.metadata = kv, .nmetadata = 1}, "a", 1);
	ck_assert(!r.ok && !r.queued);
	ck_assert_msg(strstr(r.error, "'python_client' is the client's own block"), "%s", r.error);
	r = mlog_client_send(c, &(struct mlog_opts){.metadata_json = "{\"python_client\": 1}"}, "b",
	                     1);
	ck_assert(!r.ok && !r.queued);
	ck_assert_msg(strstr(r.error, "'python_client' is the client's own block"), "%s", r.error);
	/* deeper down it is an ordinary key */
	r = mlog_client_send(
	    c, &(struct mlog_opts){.metadata_json = "{\"x\": {\"python_client\": 1}}"}, "c", 1);
	ck_assert_msg(r.ok, "%s", r.error);
	json_t *m = spooled_metadata();
	ck_assert_uint_eq(json_array_size(m), 1);
	json_decref(m);
}
END_TEST

START_TEST(test_bad_blocks_are_refused_with_a_sentence)
{
	struct {
		const char *name, *json, *says;
	} bad[] = {
	    {"c_client", "{}", "the name 'c_client' is the client's own block"},
	    {"delivery", "{}", "the name 'delivery' is added by the agent"},
	    {"", "{}", "the block's name is missing"},
	    {"python_client", NULL, "the block's JSON is missing"},
	    {NULL, "{}", "the block's name is missing"},
	    {"python_client", "[1]", "expected a JSON object ({...}), got an array"},
	    {"python_client", "{\"a\": ", "not valid JSON"},
	    {"python_client", "{\"a\": 1, \"a\": 2}", "not valid JSON"},
	    {"bad\xff", "{}", "not valid UTF-8"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[MLOG_ERROR_MAX] = "";
		ck_assert_int_eq(
		    mlog_client_set_block(c, bad[i].name, bad[i].json, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, bad[i].says), "case %zu: '%s'", i, err);
	}
	char longname[MLOG_BLOCK_NAME_MAX + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	char err[MLOG_ERROR_MAX] = "";
	ck_assert_int_eq(mlog_client_set_block(c, longname, "{}", err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "the limit is 128"), "%s", err);
	ck_assert_int_eq(mlog_client_set_block(NULL, "x", "{}", NULL, 0), -EINVAL);
	/* a refused block leaves the client as it was: c_client */
	ck_assert(mlog_client_send(c, NULL, "after", 5).ok);
	json_t *m = spooled_metadata();
	ck_assert_ptr_nonnull(json_object_get(json_array_get(m, 0), "c_client"));
	json_decref(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("client-block");
	TCase *tc = tcase_create("block");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_block_replaces_c_client);
	tcase_add_test(tc, test_block_name_is_refused_as_user_key);
	tcase_add_test(tc, test_bad_blocks_are_refused_with_a_sentence);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return tc_run(suite());
}
