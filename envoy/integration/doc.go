// Package integration holds the end-to-end tests that run the real Envoy binary (pinned by
// `make setup`) with the built module (`make build`, `make build-panictest`) on free loopback
// ports. It has no non-test code.
package integration
