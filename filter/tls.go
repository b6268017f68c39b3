package filter

import (
	"crypto/tls"
	"fmt"

	"github.com/tdspool/tdspool/tds"
)

// clientTLS terminates TDS 7.x in-band TLS for one client (login-only or full).
//
// The handshake's public-key work runs on a goroutine (Feed waits for crypto/tls to digest
// the bytes), and its output is posted back to the worker, so Envoy's event loop never waits
// for a handshake. At most one Feed is in flight; bytes that arrive meanwhile queue in
// order. After the handshake, record encryption and decryption are done inline: they are
// short symmetric-crypto steps on bytes already received.
type clientTLS struct {
	a        *tds.TLSAdapter
	mode     tds.TLSMode
	busy     bool
	queued   []byte
	complete bool
}

func loadServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("listener TLS certificate: %w", err)
	}
	// TDS 7.x clients negotiate TLS 1.2 at most in practice; 1.3 is offered to those that can.
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// startClientTLS begins the server side of the handshake after our PRELOGIN reply.
func (s *session) startClientTLS(mode tds.TLSMode) {
	s.tls = &clientTLS{a: tds.NewTLSServer(s.f.tlsConfig, mode, s.pktSize), mode: mode}
	if mode == tds.TLSModeFull {
		s.conn.IncCounter(s.f.stats.tlsFull, 1)
	} else {
		s.conn.IncCounter(s.f.stats.tlsLoginOnly, 1)
	}
}

// feedHandshake hands client bytes to the TLS engine off the worker.
func (s *session) feedHandshake(b []byte) {
	t := s.tls
	if t.busy {
		t.queued = append(t.queued, b...)
		return
	}
	t.busy = true
	a := t.a
	conn := s.conn
	go func() {
		defer func() {
			if r := recover(); r != nil {
				conn.Post(func() { s.protocolFailure(fmt.Sprintf("TLS engine panic: %v", r)) })
			}
		}()
		err := a.Feed(b)
		wire := a.TakeWire()
		plain := a.TakePlain()
		done := a.HandshakeDone()
		conn.Post(func() { s.onHandshakeProgress(err, wire, plain, done) })
	}()
}

func (s *session) onHandshakeProgress(err error, wire, plain []byte, done bool) {
	if s.finished {
		return
	}
	t := s.tls
	t.busy = false
	if err != nil {
		s.conn.IncCounter(s.f.stats.tlsFailed, 1)
		s.protocolFailure(fmt.Sprintf("client TLS handshake: %v", err))
		return
	}
	if len(wire) > 0 {
		s.conn.WriteToClient(wire, false)
	}
	if done && !t.complete {
		t.complete = true
		s.ph = phLogin
	}
	if len(plain) > 0 {
		s.clientIn.Feed(plain)
		s.advanceHandshake()
	}
	if len(t.queued) > 0 && !s.finished {
		q := t.queued
		t.queued = nil
		if t.complete {
			s.decryptClient(q)
		} else {
			s.feedHandshake(q)
		}
	}
}

// decryptClient feeds post-handshake client bytes and returns the plaintext (inline).
func (s *session) decryptClient(b []byte) []byte {
	if err := s.tls.a.Feed(b); err != nil {
		s.protocolFailure(fmt.Sprintf("client TLS: %v", err))
		return nil
	}
	plain := s.tls.a.TakePlain()
	if s.ph == phLogin {
		s.clientIn.Feed(plain)
		s.advanceHandshake()
		return nil
	}
	return plain
}

// fullTLS reports whether client-facing bytes must be encrypted now.
func (s *session) fullTLS() bool {
	return s.tls != nil && s.tls.complete && s.tls.mode == tds.TLSModeFull
}

// toClient writes bytes we produce (errors) to the client, encrypted when the session is.
func (s *session) toClient(b []byte) {
	if s.fullTLS() {
		if err := s.tls.a.Write(b); err != nil {
			return
		}
		b = s.tls.a.TakeWire()
	}
	s.conn.WriteToClient(b, false)
}

// encryptWriteBuffer replaces the plaintext in Envoy's write buffer with TLS records.
func (s *session) encryptWriteBuffer(size int) {
	for _, chunk := range s.conn.WriteBuffer() {
		if err := s.tls.a.Write(chunk); err != nil {
			s.protocolFailure(fmt.Sprintf("client TLS write: %v", err))
			return
		}
	}
	s.conn.DrainWrite(size)
	s.conn.AppendWrite(s.tls.a.TakeWire())
}

// decryptReadBuffer replaces TLS records in Envoy's read buffer with their plaintext.
func (s *session) decryptReadBuffer(size int) bool {
	plain := s.decryptClient(s.takeRead(size))
	if s.finished {
		return false
	}
	if len(plain) > 0 {
		s.conn.AppendRead(plain)
	}
	return true
}

func (s *session) closeTLS() {
	if s.tls != nil {
		s.tls.a.Close()
	}
}
