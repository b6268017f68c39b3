package main

import (
	"net"
	"strconv"
	"sync"
)

// startBackend serves one demo bucket. Until the TDS test backend lands this is a TCP echo
// server, enough to see bytes flow through Envoy and the filter.
func startBackend(name string, port int) (stop func(), err error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return func() { l.Close(); wg.Wait() }, nil
}
