// Package abi is the cgo binding between Envoy's dynamic-module network-filter ABI and the
// Go interfaces of package envoy/host. It is the only package that imports "C", and it holds
// no session logic.
//
// # Files
//
//	exports.go   the hooks Envoy calls (program init, config new/destroy, filter new,
//	             new connection, read, write, event, scheduled, watermarks, destroy), each
//	             behind the same guard: look our pointer up (absent: a safe default), run the
//	             filter, turn a panic into "close this connection, count it, log it"
//	conn.go      conn implements host.Conn on Envoy's callbacks; configHost defines stats
//	             while a config loads; logging
//	bootstrap.go the same module as a bootstrap extension: the server drain, listener
//	             updates and removals, shutdown, passed to a host.Lifecycle (the other
//	             required bootstrap hooks do nothing)
//	registry.go  the registry (the opaque pointers Envoy holds for us, each a real C
//	             allocation → Go values) and the queue behind host.Conn.Post
//
// # Rules
//
// Envoy's buffers are viewed in place and valid only until the hook returns. Go memory lent
// to Envoy for one call holds no Go pointers and is kept alive until the call returns. No
// value that is not a real pointer may ever sit in a pointer-typed Go value (the runtime
// kills the process for it, and no recover helps). Every callback taking the connection's
// Envoy pointer runs on its worker inside a hook; other goroutines only commit to its
// scheduler, through host.Conn.Post. docs/ARCHITECTURE.md lists the Envoy behaviours this
// relies on.
package abi
