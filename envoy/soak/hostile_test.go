package soak

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/internal/testcert"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/compat"
	"github.com/tdspool/tdspool/standin/standintest"
	"github.com/tdspool/tdspool/tds"
)

// hostileKinds are the attacks, each a function of a random source and the listener address.
var hostileKinds = []struct {
	name string
	run  func(rng *rand.Rand, addr string)
}{
	{"random bytes", func(rng *rand.Rand, addr string) { sendAndClose(addr, randomBytes(rng, 1+rng.IntN(2000))) }},
	{"PRELOGIN with a lying length", func(rng *rand.Rand, addr string) {
		p := tds.AppendPackets(nil, tds.PacketPrelogin, 0, preloginBytes(), 4096)
		binary.BigEndian.PutUint16(p[2:4], uint16(rng.IntN(65536))) // header length field
		sendAndClose(addr, p)
	}},
	{"PRELOGIN with lying option offsets", func(rng *rand.Rand, addr string) {
		body := preloginBytes()
		for i := 0; i < 3; i++ {
			body[rng.IntN(len(body))] = byte(rng.Uint32())
		}
		sendAndClose(addr, tds.AppendPackets(nil, tds.PacketPrelogin, 0, body, 4096))
	}},
	{"truncated LOGIN7", func(rng *rand.Rand, addr string) {
		l := login7Bytes(demoUser, demoPassword, demoDatabase)
		loginThen(addr, tds.AppendPackets(nil, tds.PacketLogin7, 0, l[:rng.IntN(len(l))], 4096))
	}},
	{"LOGIN7 with lying offsets", func(rng *rand.Rand, addr string) {
		l := login7Bytes(demoUser, demoPassword, demoDatabase)
		for i := 0; i < 4; i++ {
			l[36+rng.IntN(58)] = byte(rng.Uint32()) // the offset/length table
		}
		loginThen(addr, tds.AppendPackets(nil, tds.PacketLogin7, 0, l, 4096))
	}},
	{"oversized LOGIN7", func(rng *rand.Rand, addr string) {
		big := make([]byte, tds.MaxLogin7Size+1+rng.IntN(4096))
		copy(big, login7Bytes(demoUser, demoPassword, demoDatabase))
		binary.LittleEndian.PutUint32(big[0:4], uint32(len(big)))
		loginThen(addr, tds.AppendPackets(nil, tds.PacketLogin7, 0, big, 4096))
	}},
	{"valid login then garbage", func(rng *rand.Rand, addr string) {
		rc, err := rawLogin(addr, demoUser, demoPassword, demoDatabase)
		if err != nil {
			return
		}
		defer rc.c.Close()
		_, _ = rc.c.Write(randomBytes(rng, 1+rng.IntN(3000)))
		_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = rc.c.Read(make([]byte, 4096))
	}},
	{"valid login then a packet of the wrong type", func(rng *rand.Rand, addr string) {
		rc, err := rawLogin(addr, demoUser, demoPassword, demoDatabase)
		if err != nil {
			return
		}
		defer rc.c.Close()
		_ = rc.send(tds.PacketType(rng.IntN(256)), randomBytes(rng, rng.IntN(500)))
		_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = rc.c.Read(make([]byte, 4096))
	}},
	{"drip-fed PRELOGIN", func(rng *rand.Rand, addr string) {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		p := tds.AppendPackets(nil, tds.PacketPrelogin, 0, preloginBytes(), 4096)
		for i := 0; i < len(p) && i < 6; i++ {
			if _, err := c.Write(p[i : i+1]); err != nil {
				return
			}
			time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		}
	}},
	{"TLS garbage on the TDS 8 chain", func(rng *rand.Rand, addr string) {
		// A TLS record header (handshake, TLS 1.2) and then junk.
		sendAndClose(addr, append([]byte{0x16, 0x03, 0x03, byte(rng.IntN(256)), byte(rng.IntN(256))}, randomBytes(rng, rng.IntN(1500))...))
	}},
	{"TDS 8 handshake then garbage", func(rng *rand.Rand, addr string) {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}, ServerName: "localhost"})
		_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		_, _ = tc.Write(randomBytes(rng, 1+rng.IntN(2000)))
		_, _ = tc.Read(make([]byte, 4096))
	}},
	{"TLS garbage inside PRELOGIN (TDS 7 chain)", func(rng *rand.Rand, addr string) {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		rc := &rawConn{c: c}
		pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptOn}
		if rc.send(tds.PacketPrelogin, pre.AppendPrelogin(nil)) != nil {
			return
		}
		if err := rc.preloginReply(); err != nil {
			return
		}
		// The TLS handshake travels in PRELOGIN packets: send junk instead of a ClientHello.
		_ = rc.send(tds.PacketPrelogin, append([]byte{0x16, 0x03, 0x01, 0x00, 0x40}, randomBytes(rng, rng.IntN(800))...))
		_, _ = c.Read(make([]byte, 4096))
	}},
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// sendAndClose writes b, waits briefly for the proxy's answer or close, and hangs up.
func sendAndClose(addr string, b []byte) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write(b)
	_, _ = c.Read(make([]byte, 4096))
}

// loginThen runs a valid PRELOGIN and sends msg as the login.
func loginThen(addr string, msg []byte) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	rc := &rawConn{c: c}
	if rc.send(tds.PacketPrelogin, preloginBytes()) != nil {
		return
	}
	if err := rc.preloginReply(); err != nil {
		return
	}
	_, _ = c.Write(msg)
	_, _ = c.Read(make([]byte, 4096))
}

// TestHostileInputThroughALiveListener: thousands of malformed, truncated, oversized, lying
// and drip-fed connections, and TLS garbage on both chains, while real driver sessions run on
// the same listener. Every real query must succeed, Envoy keeps its PID, slots and backend
// sessions return to 0, and the password appears in neither Envoy's log nor its stats.
func TestHostileInputThroughALiveListener(t *testing.T) {
	backend := standintest.Start(t, standin.Config{ServerName: bucket, Users: map[string]string{demoUser: demoPassword},
		Databases: []string{demoDatabase}, DataDir: t.TempDir(), Encryption: standin.EncryptionOptional})
	cert, key, err := testcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"listener": map[string]any{"encryption": "OFF_ALLOWED", "tls_cert_file": cert, "tls_key_file": key},
		"buckets": []map[string]any{{"name": bucket, "cluster": "bucket_001", "max_connections": 8,
			"queue_timeout": "5s", "max_queue": 500}},
		"default_bucket": bucket,
		"timeouts":       map[string]any{"first_byte_timeout": "2s", "login_timeout": "4s"},
	}
	js, _ := json.Marshal(cfg)
	listen, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listen, AdminPort: admin, FilterConfigJSON: string(js),
		TDS8CertFile: cert, TDS8KeyFile: key, Buckets: []envoyconfig.Bucket{{Cluster: "bucket_001", Port: backend.Port()}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: admin, LogLevel: "debug"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy output (tail):\n%s", tail(e.Output(), 60))
		}
	})
	pid := e.Pid()
	addr := fmt.Sprintf("127.0.0.1:%d", listen)

	total := 3000
	if long() {
		total = 10000
	}
	var next atomic.Int64
	var byKind sync.Map
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 99))
			for next.Add(1) <= int64(total) {
				k := hostileKinds[rng.IntN(len(hostileKinds))]
				k.run(rng, addr)
				n, _ := byKind.LoadOrStore(k.name, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}(uint64(w))
	}
	// Real sessions on the same listener, in every encryption mode, all the while.
	var real, realErrs atomic.Int64
	var firstErr atomic.Value
	hostileDone := make(chan struct{})
	var rw sync.WaitGroup
	target := compat.Target{Host: "127.0.0.1", Port: listen, User: demoUser, Password: demoPassword,
		Database: demoDatabase, CAFile: cert, HostInCert: "localhost"}
	for _, enc := range compat.GoEncryptModes {
		connector, err := mssql.NewConnector(compat.GoDSN(target, enc))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(connector)
		db.SetMaxIdleConns(0)
		defer db.Close()
		rw.Add(1)
		go func() {
			defer rw.Done()
			for {
				select {
				case <-hostileDone:
					return
				default:
				}
				if err := session(context.Background(), db, 0); err != nil {
					realErrs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("encrypt=%s: %v", enc, err))
				} else {
					real.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(hostileDone)
	rw.Wait()

	kinds := []string{}
	byKind.Range(func(k, v any) bool {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("FIGURES %d hostile connections [%s]; %d real sessions, %d failed", total, strings.Join(kinds, ", "), real.Load(), realErrs.Load())
	if realErrs.Load() != 0 {
		t.Errorf("%d real sessions failed among the hostile traffic (first: %v)", realErrs.Load(), firstErr.Load())
	}
	if real.Load() == 0 {
		t.Errorf("no real session ran")
	}
	if exited, err := e.Exited(); exited || e.Pid() != pid {
		t.Fatalf("Envoy died: %v", err)
	}
	out := e.Output()
	if strings.Contains(out, "fatal error") {
		t.Errorf("Envoy logged a fatal error")
	}
	// Back to zero: connections, slots, backend sessions.
	var stats map[string]uint64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if stats, err = e.Stats(); err == nil && statSum(stats, "connections_active") == 0 && backend.Sessions() == 0 {
			break
		}
	}
	if v := statSum(stats, "connections_active"); v != 0 {
		t.Errorf("connections_active = %d at the end", v)
	}
	if n := backend.Sessions(); n != 0 {
		t.Errorf("backend holds %d sessions at the end", n)
	}
	if g, r := statSum(stats, "slot_granted_total"), statSum(stats, "slot_released_total"); g != r {
		t.Errorf("slots granted %d, released %d", g, r)
	}
	for name, v := range stats {
		if strings.HasSuffix(name, "panics_total") && v != 0 {
			t.Errorf("%s = %d", name, v)
		}
	}
	// The password, in clear or in its LOGIN7 obfuscation, in neither the log (at debug) nor the stats.
	all, _ := e.Admin("/stats")
	prom, _ := e.Admin("/stats/prometheus")
	obf := obfuscatedPassword(demoPassword)
	for where, text := range map[string]string{"log": out, "/stats": all, "/stats/prometheus": prom} {
		if strings.Contains(text, demoPassword) || strings.Contains(text, obf) {
			t.Errorf("the password appears in Envoy's %s", where)
		}
	}
	t.Logf("protocol errors %d, login timeouts %d, TLS failures %d", statSum(stats, "protocol_errors_total"),
		statSum(stats, "login_timeouts_total"), statSum(stats, "tls_failed_total"))
}

// obfuscatedPassword is the password as LOGIN7 carries it: UTF-16LE, each byte's nibbles
// swapped and XORed with 0xA5 (MS-TDS 2.2.6.4).
func obfuscatedPassword(p string) string {
	var b []byte
	for _, r := range p {
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	for i, c := range b {
		b[i] = (c<<4 | c>>4) ^ 0xA5
	}
	return string(b)
}
