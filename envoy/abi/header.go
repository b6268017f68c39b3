package abi

// The C header this package compiles against (abi/abi.h, found through CGO_CFLAGS; see the
// Makefile) ships in a Go module whose only Go package here is this doc-only one. Importing it
// makes the module a direct requirement in go.mod, so `go mod tidy` keeps it pinned.
import _ "github.com/envoyproxy/envoy/source/extensions/dynamic_modules/abi"
