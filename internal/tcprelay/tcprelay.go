// Package tcprelay gives a test a loopback listener whose connections are each handed to a
// handler on a goroutine of their own. At the end of the test the listener closes and every
// handler is waited for, so nothing a test started outlives it.
package tcprelay

import (
	"net"
	"sync"
	"testing"
)

// Listen listens on a free loopback port and serves each accepted connection with handle.
func Listen(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}
