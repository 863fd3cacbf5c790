/* test_receiver.c - the mlog-receiver Check suite.  Every test starts the
 * real binary (MLOG_RECEIVER) on 127.0.0.1 port 0 and talks HTTP to it. */
#include <check.h>
#include <stdlib.h>

#include <curl/curl.h>

#include "check_main.h"
#include "tests.h"

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	Suite *s = suite_create("receiver");
	suite_add_tcase(s, api_tcase());
	suite_add_tcase(s, faults_tcase());
	suite_add_tcase(s, robust_tcase());
	suite_add_tcase(s, jscan_tcase());
	suite_add_tcase(s, tls_tcase());
	suite_add_tcase(s, figures_tcase());
	int rc = tc_run(s);
	curl_global_cleanup();
	return rc;
}
