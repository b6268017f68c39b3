// Package redistest gives tests a real redis-server (started by internal/stack, the one
// launcher) on a free loopback port, stopped at test cleanup, with the test's own failure
// and skip handling.
package redistest

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tdspool/tdspool/internal/stack"
)

// Server is one redis-server process owned by a test: Addr, Restart, Pause, Resume and Stop
// come from stack.Redis.
type Server struct {
	*stack.Redis
	tb testing.TB
}

// Start runs redis-server, or skips the test when it is not installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if _, err := stack.RedisBinary(); err != nil {
		tb.Skip(err)
	}
	r, err := stack.StartRedis(0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Stop)
	return &Server{Redis: r, tb: tb}
}

// Restart kills the server and starts an empty one on the same port, failing the test if
// it cannot.
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.Redis.Restart(); err != nil {
		s.tb.Fatalf("restart %s: %v", s.Addr, err)
	}
}

// Client returns a client for direct inspection, closed at cleanup.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.tb.Cleanup(func() { c.Close() })
	return c
}
