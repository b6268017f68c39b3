//go:build tdspool_panictest

package main

import (
	"bytes"

	"github.com/tdspool/tdspool/envoy/host"
)

// panicTrigger, anywhere in bytes a client sends, makes the filter panic inside on_read. Only a
// module built with -tags tdspool_panictest has this; the integration tests use it to prove
// that a panic closes one connection and Envoy keeps serving.
var panicTrigger = []byte("TDSPOOL-PANIC")

func wrapForTests(f host.ConfigFactory) host.ConfigFactory {
	return func(name string, config []byte, h host.ConfigHost) (host.FilterFactory, error) {
		ff, err := f(name, config, h)
		if err != nil {
			return nil, err
		}
		return panicFactory{ff}, nil
	}
}

type panicFactory struct{ host.FilterFactory }

func (p panicFactory) NewFilter(c host.Conn) host.Filter {
	return &panicFilter{Filter: p.FilterFactory.NewFilter(c), conn: c}
}

type panicFilter struct {
	host.Filter
	conn host.Conn
}

func (p *panicFilter) OnRead(size int, endStream bool) host.Status {
	for _, chunk := range p.conn.ReadBuffer() {
		if bytes.Contains(chunk, panicTrigger) {
			panic("tdspool_panictest: trigger received")
		}
	}
	return p.Filter.OnRead(size, endStream)
}
