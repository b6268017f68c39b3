package integration

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
)

// liveSessions counts the stand-in's logged-in sessions whose peer has not closed its side:
// each session's socket is looked up in the kernel's table and counted while it is
// ESTABLISHED. The kernel sees a proxy's close at once; the stand-in's own count (Sessions)
// follows only when its goroutine runs, which on a loaded machine can be hundreds of
// milliseconds later. Cap oracles use this so that they measure the proxy, not that lag.
func liveSessions(backend *standin.Server) (int, error) {
	peers := map[int]bool{}
	for _, a := range backend.SessionPeers() {
		if _, p, err := net.SplitHostPort(a); err == nil {
			n, _ := strconv.Atoi(p)
			peers[n] = true
		}
	}
	if len(peers) == 0 {
		return 0, nil
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		k, err := establishedFrom(table, backend.Port(), peers)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

func mustLiveSessions(t *testing.T, backend *standin.Server) int {
	t.Helper()
	n, err := liveSessions(backend)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// establishedFrom counts ESTABLISHED sockets in a /proc/net/tcp table with local port local
// and a remote port in peers.
func establishedFrom(table string, local int, peers map[int]bool) (int, error) {
	f, err := os.Open(table)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st ...; addresses are HEXIP:HEXPORT.
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "01" {
			continue
		}
		if hexPort(fields[1]) == local && peers[hexPort(fields[2])] {
			n++
		}
	}
	return n, sc.Err()
}

func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.ParseUint(addr[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(p)
}

// TestLiveSessionsSeesAClose: the oracle counts a logged-in session, and stops counting it
// once its client's socket has closed.
func TestLiveSessionsSeesAClose(t *testing.T) {
	backend := startBucket(t, "bucket-001")
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://app:pw@%s?encrypt=disable", backend.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err == nil {
		err = conn.PingContext(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "one live session", func() bool { return mustLiveSessions(t, backend) == 1 })
	conn.Close()
	db.Close()
	waitFor(t, 3*time.Second, "no live session after the close", func() bool { return mustLiveSessions(t, backend) == 0 })
}
