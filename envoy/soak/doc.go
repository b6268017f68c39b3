// Package soak holds the long-running tests of a whole tdspool fleet on this machine: three
// Envoys with the module, one Redis and the SQL Server stand-in, under churning driver clients
// while an Envoy is SIGKILLed, Redis is paused and restarted empty and the backend is killed
// and restarted; and hostile input through a live listener. Each prints its figures.
//
// The pooled soak does the same to a session-pooled and a transaction-pooled bucket on the
// module-owned leg, adding idle pooled backends killed, a backend killed under a client's
// transaction and clients killed mid-result; every client tags its SET options, CONTEXT_INFO,
// temp table and rows with its own id and checks it never sees another's. The pooled hostile
// test sends malformed and truncated requests, an ATTENTION at every point and requests
// abandoned at once to both pooled buckets while real clients run the same checks; at rest
// each bucket's backend connections are exactly its idle pooled ones and its slots balance.
//
// `make test` runs a short version; `make soak` (TDSPOOL_SOAK=1) runs every phase for minutes.
// The package has no non-test code.
package soak
