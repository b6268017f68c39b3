package integration

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// TestSlowClientsClosedWithinTheConfiguredBounds: a silent client is closed within
// first_byte_timeout and a drip-feeding one within login_timeout, counted from the accept,
// on every shipped chain: the plain TDS 7 listener, and the listener with the TDS 8 chain
// where tls_inspector holds the connection before any network filter runs.
func TestSlowClientsClosedWithinTheConfiguredBounds(t *testing.T) {
	const (
		firstByte = 3 * time.Second
		login     = 6 * time.Second
		tolerance = 1500 * time.Millisecond // a loaded two-core machine
	)
	timeouts := map[string]any{"timeouts": map[string]any{"first_byte_timeout": "3s", "login_timeout": "6s"}}
	prelogin := tds.AppendPackets(nil, tds.PacketPrelogin, 0,
		(&tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup}).AppendPrelogin(nil), 4096)
	// The drip: 2 s of silence, the first 8 bytes (enough for tls_inspector to decide) and
	// then one byte every 0.7 s, so that the PRELOGIN never completes. Where a listener
	// filter holds the connection, the network filter starts 2 s after the accept.
	const (
		stall     = 2 * time.Second
		burst     = 8
		dripEvery = 700 * time.Millisecond
	)
	clientHello := recordClientHello(t)

	type slowClient struct {
		name  string
		bound time.Duration
		run   func(addr string) (time.Duration, error) // time from dial to the proxy's close
	}
	clients := []slowClient{
		{"silent", firstByte, func(addr string) (time.Duration, error) { return dripTo(addr, nil, 0, 0, 0, nil) }},
		{"PRELOGIN drip", login, func(addr string) (time.Duration, error) { return dripTo(addr, prelogin, stall, burst, dripEvery, nil) }},
	}
	tdsStackClients := append([]slowClient{}, clients...)
	tdsStackClients = append(tdsStackClients,
		slowClient{"TLS ClientHello drip", firstByte, func(addr string) (time.Duration, error) {
			return dripTo(addr, clientHello, stall, burst, dripEvery, nil)
		}},
		slowClient{"TDS 8 then silent", firstByte, func(addr string) (time.Duration, error) {
			return dripTo(addr, nil, 0, 0, 0, tds8Handshake)
		}},
		slowClient{"TDS 8 then PRELOGIN drip", login, func(addr string) (time.Duration, error) {
			return dripTo(addr, prelogin, stall, burst, dripEvery, tds8Handshake)
		}},
	)
	for _, chain := range []struct {
		name    string
		tls     bool
		clients []slowClient
	}{
		{"TDS 7 listener", false, clients},
		{"listener with the TDS 8 chain", true, tdsStackClients},
	} {
		t.Run(chain.name, func(t *testing.T) {
			s := startTDSStack(t, tdsStackOptions{capacity: 2, tls: chain.tls, extra: timeouts})
			addr := fmt.Sprintf("127.0.0.1:%d", s.port)
			var wg sync.WaitGroup
			for _, c := range chain.clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					took, err := c.run(addr)
					switch {
					case err != nil:
						t.Errorf("%s: %v", c.name, err)
					case took > c.bound+tolerance:
						t.Errorf("%s: closed after %s, bound %s (+%s)", c.name, took.Round(10*time.Millisecond), c.bound, tolerance)
					default:
						t.Logf("%s: closed after %s (bound %s)", c.name, took.Round(10*time.Millisecond), c.bound)
					}
				}()
			}
			wg.Wait()
			s.waitIdle(t)
		})
	}
}

// dripTo dials addr, runs handshake (if any) on the connection, waits stall, writes the first
// burst bytes of payload and then one more every period (nothing if payload is nil) until the
// proxy closes the connection. It returns the time from the dial to the close; it gives up
// after 30 s.
func dripTo(addr string, payload []byte, stall time.Duration, burst int, period time.Duration, handshake func(net.Conn) (net.Conn, error)) (time.Duration, error) {
	start := time.Now()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	c := raw
	if handshake != nil {
		if c, err = handshake(raw); err != nil {
			return 0, fmt.Errorf("handshake: %w", err)
		}
	}
	_ = c.SetDeadline(start.Add(30 * time.Second))
	closed := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	var tick <-chan time.Time
	i := 0
	if len(payload) > 0 {
		select {
		case took := <-closed:
			return took, nil
		case <-time.After(stall):
		}
		if _, err := c.Write(payload[:burst]); err != nil {
			return time.Since(start), nil
		}
		i = burst
		ticker := time.NewTicker(period)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case took := <-closed:
			if took >= 29*time.Second {
				return took, fmt.Errorf("still open after %s", took)
			}
			return took, nil
		case <-tick:
			if i < len(payload) {
				if _, err := c.Write(payload[i : i+1]); err != nil {
					return time.Since(start), nil // the proxy closed it
				}
				i++
			}
		}
	}
}

// tds8Handshake completes a TDS 8 (strict) TLS handshake: TLS from the first byte, ALPN tds/8.0.
func tds8Handshake(c net.Conn) (net.Conn, error) {
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}, ServerName: "localhost"})
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// recordClientHello captures the bytes a TDS 8 client's TLS handshake starts with.
func recordClientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		_ = tls.Client(a, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}, ServerName: "localhost"}).Handshake()
	}()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := b.Read(buf)
	if err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	b.Close()
	return buf[:n]
}
