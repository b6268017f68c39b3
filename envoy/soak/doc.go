// Package soak holds the long-running tests of a whole tdspool fleet on this machine: three
// Envoys with the module, one Redis and the SQL Server stand-in, under churning driver clients
// while an Envoy is SIGKILLed, Redis is paused and restarted empty and the backend is killed
// and restarted; and hostile input through a live listener. Each prints its figures.
//
// `make test` runs a short version; `make soak` (TDSPOOL_SOAK=1) runs every phase for minutes.
// The package has no non-test code.
package soak
