/* tests.h - the receiver suite's test cases, one function per file. */
#ifndef MLOG_RECEIVER_TESTS_H
#define MLOG_RECEIVER_TESTS_H

#include <check.h>

TCase *api_tcase(void);	   /* test_api.c: endpoints, validation, dedup */
TCase *faults_tcase(void); /* test_faults.c: the fault-injection flags */
TCase *robust_tcase(void); /* test_robust.c: bad requests, limits, life */
TCase *jscan_tcase(void);  /* test_jscan.c: the JSON scanner vs jansson */
TCase *tls_tcase(void);	   /* test_tls.c: HTTPS with --tls-cert/--tls-key */
TCase *figures_tcase(void); /* test_figures.c: open requests, wire bytes */

#endif
