/* nats_conn.c — connecting to a NATS cluster with the settings of a
 * `nats:` section, and checking a JetStream stream (nats_conn.h). */
#include "nats_conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const struct spool_tx_option nats_options[NK_NKEYS] = {
	[NK_SERVERS] = {"servers", SPOOL_TX_LIST, SPOOL_TX_TEXT, NULL, NULL, 0, 0, NULL,
			"NATS servers of the JetStream cluster: nats://host:port or tls://host:port (required)"},
	[NK_SUBJECT] = {"subject", SPOOL_TX_STRING, SPOOL_TX_TEXT, "logs.{hostname}", NULL, 0, 0, NULL,
			"subject to publish to; {hostname} becomes this host's name (dots as _)"},
	[NK_STREAM] = {"stream", SPOOL_TX_STRING, SPOOL_TX_TEXT, "MASTER_LOG", NULL, 0, 0, NULL,
		       "JetStream stream that must take the subject (checked at connect)"},
	[NK_CREDS_FILE] = {"creds_file", SPOOL_TX_STRING, SPOOL_TX_READ_FILE, NULL, NULL, 0, 0, NULL,
			   "NATS credentials file (JWT and seed; owned by the agent's user, mode 0600 or 0400)"},
	[NK_USER] = {"user", SPOOL_TX_STRING, SPOOL_TX_TEXT, NULL, NULL, 0, 0, NULL,
		     "user name (with password_file)"},
	[NK_PASSWORD_FILE] = {"password_file", SPOOL_TX_STRING, SPOOL_TX_SECRET_FILE, NULL, NULL, 0, 0, NULL,
			      "file holding the user's password (mode 0600 or 0400)"},
	[NK_TOKEN_FILE] = {"token_file", SPOOL_TX_STRING, SPOOL_TX_SECRET_FILE, NULL, NULL, 0, 0, NULL,
			   "file holding an authentication token (mode 0600 or 0400)"},
	[NK_TLS_CA_FILE] = {"tls.ca_file", SPOOL_TX_STRING, SPOOL_TX_READ_FILE, NULL, NULL, 0, 0, NULL,
			    "CA bundle (PEM) to verify the servers with"},
	[NK_TLS_CLIENT_CERT] = {"tls.client_cert", SPOOL_TX_STRING, SPOOL_TX_READ_FILE, NULL, NULL, 0, 0, NULL,
				"client certificate (PEM)"},
	[NK_TLS_CLIENT_KEY] = {"tls.client_key", SPOOL_TX_STRING, SPOOL_TX_READ_FILE, NULL, NULL, 0, 0, NULL,
			       "client key (PEM)"},
	[NK_MAX_PENDING] = {"max_pending", SPOOL_TX_INT, SPOOL_TX_TEXT, "4096", NULL, 1, 1000000, NULL,
			    "most publishes waiting for their PubAck at once"},
	[NK_ACK_TIMEOUT] = {"ack_timeout_seconds", SPOOL_TX_NUMBER, SPOOL_TX_TEXT, "10", NULL, 0.05, 3600, NULL,
			    "a publish with no PubAck after this long is kept and sent again"},
	[NK_CONNECT_TIMEOUT] = {"connect_timeout_seconds", SPOOL_TX_NUMBER, SPOOL_TX_TEXT, "5", NULL, 0.05, 600,
				NULL, "connect timeout per server"},
};

int nats_section_check(const struct spool_tx_value *v, size_t n, size_t *key, char *why, size_t whylen)
{
	if (n < NK_NKEYS) {
		*key = 0;
		snprintf(why, whylen, "incomplete settings");
		return -1;
	}
	if (!v[NK_SERVERS].set || v[NK_SERVERS].nitems == 0) {
		*key = NK_SERVERS;
		snprintf(why, whylen, "not set; the nats transport needs at least one nats:// or tls:// URL");
		return -1;
	}
	for (size_t i = 0; i < v[NK_SERVERS].nitems; i++) {
		const char *u = v[NK_SERVERS].items[i];
		if (strncmp(u, "nats://", 7) != 0 && strncmp(u, "tls://", 6) != 0) {
			*key = NK_SERVERS;
			snprintf(why, whylen, "'%s': not a nats:// or tls:// URL", u);
			return -1;
		}
		const char *host = strstr(u, "://") + 3;
		if (!*host || *host == ':' || *host == '/') {
			*key = NK_SERVERS;
			snprintf(why, whylen, "'%s': no host", u);
			return -1;
		}
	}
	const char *sub = v[NK_SUBJECT].text;
	if (!sub || strpbrk(sub, " \t*>") || sub[0] == '.' || sub[strlen(sub) - 1] == '.' || strstr(sub, "..")) {
		*key = NK_SUBJECT;
		snprintf(why, whylen, "'%s': not a subject to publish to (tokens separated by dots, no * or >)",
			 sub ? sub : "");
		return -1;
	}
	int nauth = v[NK_CREDS_FILE].set + v[NK_USER].set + v[NK_TOKEN_FILE].set;
	if (nauth > 1) {
		*key = v[NK_TOKEN_FILE].set ? NK_TOKEN_FILE : NK_USER;
		snprintf(why, whylen, "give one of creds_file, user (with password_file) or token_file, not several");
		return -1;
	}
	if (v[NK_USER].set != v[NK_PASSWORD_FILE].set) {
		*key = v[NK_USER].set ? NK_PASSWORD_FILE : NK_USER;
		snprintf(why, whylen, "user and password_file go together: give both or neither");
		return -1;
	}
	if (v[NK_CREDS_FILE].set && nats_link_check_private(v[NK_CREDS_FILE].text, why, whylen)) {
		*key = NK_CREDS_FILE;
		return -1;
	}
	if (v[NK_TLS_CLIENT_CERT].set != v[NK_TLS_CLIENT_KEY].set) {
		*key = v[NK_TLS_CLIENT_CERT].set ? NK_TLS_CLIENT_KEY : NK_TLS_CLIENT_CERT;
		snprintf(why, whylen, "tls.client_cert and tls.client_key go together: give both or neither");
		return -1;
	}
	return 0;
}

void nats_link_config_from(const struct spool_tx_value *v, const char *name, struct nats_link_config *lc)
{
	*lc = (struct nats_link_config){
		.servers = v[NK_SERVERS].items,
		.nservers = v[NK_SERVERS].nitems,
		.creds_file = v[NK_CREDS_FILE].set ? v[NK_CREDS_FILE].text : NULL,
		.user = v[NK_USER].set ? v[NK_USER].text : NULL,
		.password = v[NK_PASSWORD_FILE].set ? v[NK_PASSWORD_FILE].text : NULL,
		.token = v[NK_TOKEN_FILE].set ? v[NK_TOKEN_FILE].text : NULL,
		.ca_file = v[NK_TLS_CA_FILE].set ? v[NK_TLS_CA_FILE].text : NULL,
		.client_cert = v[NK_TLS_CLIENT_CERT].set ? v[NK_TLS_CLIENT_CERT].text : NULL,
		.client_key = v[NK_TLS_CLIENT_KEY].set ? v[NK_TLS_CLIENT_KEY].text : NULL,
		.connect_timeout = v[NK_CONNECT_TIMEOUT].number,
		.name = name,
	};
}

void nats_link_servers_text(const struct nats_link_config *lc, char *buf, size_t len)
{
	if (lc->nservers == 0)
		snprintf(buf, len, "(no server)");
	else if (lc->nservers == 1)
		snprintf(buf, len, "%s", lc->servers[0]);
	else
		snprintf(buf, len, "%s (and %zu more)", lc->servers[0], lc->nservers - 1);
}

int nats_link_check_private(const char *path, char *why, size_t whylen)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s: not a regular file", path);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, whylen, "%s: refused: owned by uid %lu, not by this user (uid %lu)", path,
			 (unsigned long)st.st_uid, (unsigned long)geteuid());
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen,
			 "%s: refused: mode %04o lets group or others read or change the credentials; expected "
			 "0600 or 0400 (chmod 600 %s)",
			 path, (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

/* The text of the last libnats error, without its stack. */
static const char *last_error_text(natsStatus s)
{
	natsStatus ls = NATS_OK;
	const char *t = nats_GetLastError(&ls);
	if (!t || !*t)
		return natsStatus_GetText(s);
	/* "(conn.c:1905): Authorization Violation": the text only */
	const char *e = t[0] == '(' ? strstr(t, "): ") : NULL;
	return e ? e + 3 : t;
}

static bool looks_like_auth(natsStatus s, const char *text)
{
	if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED)
		return true;
	return text && (strcasestr(text, "authorization") || strcasestr(text, "authentication") ||
			strcasestr(text, "user authentication"));
}

enum nats_link_fail nats_link_connect(const struct nats_link_config *lc, natsConnection **out, char *err,
				      size_t errlen)
{
	natsOptions *o = NULL;
	natsStatus s;
	const char *what = "options";
	char servers[300];
	nats_link_servers_text(lc, servers, sizeof(servers));
	*out = NULL;
	if ((s = natsOptions_Create(&o)) != NATS_OK)
		goto local;
	what = "nats.servers";
	if ((s = natsOptions_SetServers(o, (const char **)lc->servers, (int)lc->nservers)) != NATS_OK)
		goto local;
	natsOptions_SetNoRandomize(o, false);
	natsOptions_SetTimeout(o, (int64_t)(lc->connect_timeout * 1000));
	natsOptions_SetMaxReconnect(o, -1);
	natsOptions_SetReconnectWait(o, 250);
	natsOptions_SetPingInterval(o, 5000);
	natsOptions_SetMaxPingsOut(o, 2);
	if (lc->name)
		natsOptions_SetName(o, lc->name);
	if (lc->creds_file) {
		what = "nats.creds_file";
		if ((s = natsOptions_SetUserCredentialsFromFiles(o, lc->creds_file, NULL)) != NATS_OK)
			goto local;
	}
	if (lc->user) {
		what = "nats.user";
		if ((s = natsOptions_SetUserInfo(o, lc->user, lc->password ? lc->password : "")) != NATS_OK)
			goto local;
	}
	if (lc->token) {
		what = "nats.token_file";
		if ((s = natsOptions_SetToken(o, lc->token)) != NATS_OK)
			goto local;
	}
	if (lc->ca_file) {
		what = "nats.tls.ca_file";
		if ((s = natsOptions_LoadCATrustedCertificates(o, lc->ca_file)) != NATS_OK)
			goto local;
	}
	if (lc->client_cert) {
		what = "nats.tls.client_cert";
		if ((s = natsOptions_LoadCertificatesChain(o, lc->client_cert, lc->client_key)) != NATS_OK)
			goto local;
	}
	s = natsConnection_Connect(out, o);
	if (s != NATS_OK) {
		const char *text = last_error_text(s);
		bool auth = looks_like_auth(s, text);
		const char *keys = lc->creds_file ? "nats.creds_file"
				   : lc->user	  ? "nats.user and nats.password_file"
				   : lc->token	  ? "nats.token_file"
						  : "no credentials set (nats.creds_file, nats.user, nats.token_file)";
		if (auth)
			snprintf(err, errlen, "nats: %.100s refused the credentials of %s: %.60s", servers, keys, text);
		else
			snprintf(err, errlen, "nats: cannot connect to nats.servers %s: %s", servers, text);
		natsOptions_Destroy(o);
		*out = NULL;
		return auth ? NATS_LINK_AUTH : NATS_LINK_UNREACHABLE;
	}
	natsOptions_Destroy(o);
	return NATS_LINK_OK;
local:
	snprintf(err, errlen, "nats: %s: %s", what, last_error_text(s));
	natsOptions_Destroy(o);
	return NATS_LINK_LOCAL;
}

bool nats_subject_matches(const char *pat, const char *sub)
{
	while (*pat && *sub) {
		const char *pe = strchr(pat, '.'), *se = strchr(sub, '.');
		size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
		size_t sl = se ? (size_t)(se - sub) : strlen(sub);
		if (pl == 1 && pat[0] == '>')
			return true;
		if (!(pl == 1 && pat[0] == '*') && (pl != sl || memcmp(pat, sub, pl) != 0))
			return false;
		if (!pe || !se)
			return !pe && !se;
		pat = pe + 1;
		sub = se + 1;
	}
	return !*pat && !*sub;
}

enum nats_stream_check nats_link_check_stream(natsConnection *nc, const char *stream, const char *subject,
					      double timeout, char *err, size_t errlen)
{
	jsCtx *js = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = (int64_t)(timeout * 1000);
	if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
		snprintf(err, errlen, "nats: no JetStream context: %s", last_error_text(NATS_ERR));
		return NATS_STREAM_UNAVAILABLE;
	}
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	enum nats_stream_check rc = NATS_STREAM_OK;
	if (s != NATS_OK) {
		if (jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND) {
			snprintf(err, errlen, "nats.stream: stream '%s' does not exist on the cluster", stream);
			rc = NATS_STREAM_MISSING;
		} else {
			snprintf(err, errlen, "nats.stream: cannot read stream '%s': %s", stream,
				 last_error_text(s));
			rc = NATS_STREAM_UNAVAILABLE;
		}
	} else if (subject) {
		bool bound = false;
		const jsStreamConfig *c = si->Config;
		for (int i = 0; c && i < c->SubjectsLen && !bound; i++)
			bound = nats_subject_matches(c->Subjects[i], subject);
		if (!bound) {
			snprintf(err, errlen, "nats.subject: stream '%s' does not take subject '%s' (its subjects: %s%s)",
				 stream, subject, c && c->SubjectsLen ? c->Subjects[0] : "none",
				 c && c->SubjectsLen > 1 ? ", ..." : "");
			rc = NATS_STREAM_NOT_BOUND;
		}
	}
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	return rc;
}
