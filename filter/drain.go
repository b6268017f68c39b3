package filter

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
)

// Draining: how a listener drain and an Envoy hot restart finish.
//
// Envoy drains a listener (LDS update or removal) or the whole server (the parent process of
// a hot restart, /drain_listeners?graceful) by stopping new connections and, for protocols it
// understands, asking clients to leave. tcp_proxy and a network filter are told nothing: SQL
// sessions idle in client pools would stay until Envoy cuts them at the end of its drain time
// (LDS) or when the parent process exits (hot restart), transactions or not.
//
// ABI v0.1.0 gives a network filter no drain event, but the same module can also be loaded as a
// bootstrap extension (envoy.bootstrap.dynamic_modules, extension_name "tdspool"), which hears
// the server-wide drain and every listener update and removal. Those events put the sessions of
// the affected configs in draining:
//   - a session inside a transaction is closed as soon as the transaction ends: after the reply
//     that leaves it with no transaction, no request in flight and nothing pinned (so the
//     COMMIT's answer reaches the client, then the connection closes);
//   - every other session (idle between requests, busy with requests outside a transaction, or
//     pinned by temp tables, prepared handles...) carries on until the drain timeout
//     (timeouts.drain_timeout; default Envoy's --drain-time-s) and is closed then, as is a
//     transaction still open then.
//
// A client sees the connection close between requests, as when SQL Server shuts down; its next
// connection goes to the new listener or process. Idle pooled backends of a draining config are
// closed at once and their slots given back.
//
// Which configs an LDS event drains: a config belongs to the listener whose name equals its
// stat_prefix. When listener L is updated, every config with stat_prefix L loaded before the
// previous event for L (or before Envoy finished starting) is drained: those are the old
// listener's, which keeps its connections until they close. An in-place update that replaced
// only some filter chains (fewer new configs than old ones) drains nothing, because Envoy keeps
// the unchanged chains' configs in service and they cannot be told apart. When L is removed,
// all of its configs drain. A config whose stat_prefix names no listener drains only with the
// whole server. Sessions that start on a config after its drain began are not drained (Envoy
// stops sending new connections to a draining listener, so these are rare).

// drainStats are the listener-wide drain counters.
type drainStats struct {
	closedDone    host.MetricID // counter: draining sessions closed when their transaction ended
	closedTimeout host.MetricID // counter: draining sessions closed at the drain timeout
}

func defineDrainStats(d *metricDefiner) drainStats {
	return drainStats{
		closedDone:    d.counter("drain_sessions_closed_total"),
		closedTimeout: d.counter("drain_sessions_timed_out_total"),
	}
}

// drainSet is one config's open sessions, for draining them.
type drainSet struct {
	mu       sync.Mutex
	sessions map[*session]struct{}
	started  bool
}

func (f *Factory) trackSession(s *session) {
	d := &f.drainSet
	d.mu.Lock()
	if d.sessions == nil {
		d.sessions = map[*session]struct{}{}
	}
	d.sessions[s] = struct{}{}
	d.mu.Unlock()
}

func (f *Factory) untrackSession(s *session) {
	d := &f.drainSet
	d.mu.Lock()
	delete(d.sessions, s)
	d.mu.Unlock()
}

// drainTimeout is the configured drain timeout, else Envoy's.
func (f *Factory) drainTimeout() time.Duration {
	if d := f.cfg.Timeouts.DrainTimeout.AsDuration(); d > 0 {
		return d
	}
	return envoyDrainTime()
}

func (f *Factory) draining() bool {
	f.drainSet.mu.Lock()
	defer f.drainSet.mu.Unlock()
	return f.drainSet.started
}

// beginDrain puts the sessions open now into draining (any goroutine; once per config). Idle
// pooled backends close now.
func (f *Factory) beginDrain() bool {
	d := &f.drainSet
	d.mu.Lock()
	if d.started {
		d.mu.Unlock()
		return false
	}
	d.started = true
	sessions := make([]*session, 0, len(d.sessions))
	for s := range d.sessions {
		sessions = append(sessions, s)
	}
	d.mu.Unlock()
	f.drainPools()
	deadline := f.now().Add(f.drainTimeout())
	for _, s := range sessions {
		s.conn.Post(func() { s.startDraining(deadline) })
	}
	return true
}

// startDraining runs on the session's worker.
func (s *session) startDraining(deadline time.Time) {
	if s.finished || s.draining {
		return
	}
	s.draining = true
	s.txInDrain = s.relay.pins[pinTransaction]
	conn := s.conn
	s.drainTimer = time.AfterFunc(max(deadline.Sub(s.f.now()), time.Millisecond), func() {
		conn.Post(s.onDrainDeadline)
	})
	s.closeIfDrained()
}

// closeIfDrained closes a draining session whose transaction has ended. It is posted from the
// end of the reply, so it runs after the reply has passed through the filter: the reply is in
// Envoy's write buffer and FlushWrite sends it first.
func (s *session) closeIfDrained() {
	if s.finished || !s.draining || !s.txInDrain || s.ph != phRelay || !s.relay.idle() || s.relay.pinned() {
		return
	}
	s.conn.IncCounter(s.f.drainStats.closedDone, 1)
	s.finishWith(host.FlushWrite, "tdspool_drained")
}

// drainOnReplyEnd is called at the end of every server reply in the relay.
func (s *session) drainOnReplyEnd() {
	if !s.draining {
		return
	}
	if s.relay.pins[pinTransaction] {
		s.txInDrain = true // begun during the drain: its end closes the session too
		return
	}
	if s.txInDrain {
		s.conn.Post(s.closeIfDrained)
	}
}

// onDrainDeadline closes whatever is still open at the drain timeout. Between requests the
// client sees the connection close, as when SQL Server shuts down (an open transaction rolls
// back on the server); in the middle of a reply an ERROR would land inside the server's token
// stream, so the connection only closes there too. A login still waiting for its slot or its
// backend is owed an answer and gets "not currently available" (40613), which drivers retry.
func (s *session) onDrainDeadline() {
	if s.finished {
		return
	}
	s.conn.IncCounter(s.f.drainStats.closedTimeout, 1)
	s.conn.Log(host.LogInfo, fmt.Sprintf("closing: drain timeout (%s) reached (phase %s)", s.f.drainTimeout(), s.ph))
	switch {
	case s.ph == phWaitSlot, s.ph == phBackendPrelogin, s.ph == phBackendLogin && !s.loginReplyStarted:
		s.conn.IncCounter(s.bucket.stats.backendUnavailable, 1)
		s.refuse(backendUnavailable(s.bucket.cfg.Name, "this listener was drained by Envoy; connect again"))
	default:
		s.finishWith(host.FlushWrite, "tdspool_drain_timeout")
	}
}

func (s *session) stopDrainTimer() {
	if s.drainTimer != nil {
		s.drainTimer.Stop()
		s.drainTimer = nil
	}
}

// The live configs of this process, for the bootstrap extension's events.
var liveConfigs = struct {
	mu      sync.Mutex
	seq     uint64
	loaded  map[*Factory]uint64 // config → its load number
	mark    map[string]uint64   // listener name → load number at its last event
	initSeq uint64              // load number when Envoy finished starting
}{loaded: map[*Factory]uint64{}, mark: map[string]uint64{}}

func registerLive(f *Factory) {
	liveConfigs.mu.Lock()
	liveConfigs.seq++
	liveConfigs.loaded[f] = liveConfigs.seq
	liveConfigs.mu.Unlock()
}

func unregisterLive(f *Factory) {
	liveConfigs.mu.Lock()
	delete(liveConfigs.loaded, f)
	liveConfigs.mu.Unlock()
}

// configsToDrain picks the live configs an event drains: all of them (server drain), those of
// listener name loaded up to its previous event (update), or all of listener name's (removal).
//
// An update that brought fewer new configs than there are old ones not yet draining is an
// in-place update of some filter chains: Envoy keeps the unchanged chains, and their configs,
// which must not be drained, cannot be told apart from the replaced ones. Such an update drains
// nothing (partial is true); Envoy closes the replaced chains' connections at --drain-time-s.
func configsToDrain(listener string, update, all bool) (out []*Factory, partial bool) {
	liveConfigs.mu.Lock()
	defer liveConfigs.mu.Unlock()
	mark, seen := liveConfigs.mark[listener]
	if !seen {
		mark = liveConfigs.initSeq
	}
	newer, olderLive := 0, 0
	for f, seq := range liveConfigs.loaded {
		switch {
		case all:
		case f.cfg.StatPrefix != listener:
			continue
		case update && seq > mark:
			newer++
			continue
		}
		out = append(out, f)
		if !f.draining() {
			olderLive++
		}
	}
	if update {
		liveConfigs.mark[listener] = liveConfigs.seq
		if newer < olderLive {
			return nil, true
		}
	}
	return out, false
}

// lifecycle is the bootstrap extension: Envoy's process events, turned into drains.
type lifecycle struct {
	log func(host.LogLevel, string)
}

// NewLifecycle is the bootstrap extension's factory (a host.LifecycleFactory). It takes no
// config: the drain timeout is each listener's (timeouts.drain_timeout).
func NewLifecycle(name string, config []byte, log func(host.LogLevel, string)) (host.Lifecycle, error) {
	if c := bytes.TrimSpace(config); len(c) > 0 && string(c) != "{}" && string(c) != `""` {
		return nil, fmt.Errorf("bootstrap extension %q takes no config (got %d bytes); drain_timeout is set per listener", name, len(config))
	}
	return &lifecycle{log: log}, nil
}

func (l *lifecycle) OnServerInitialized() {
	liveConfigs.mu.Lock()
	liveConfigs.initSeq = liveConfigs.seq
	liveConfigs.mu.Unlock()
}

func (l *lifecycle) OnDrainStarted() {
	all, _ := configsToDrain("", false, true)
	l.drain("server drain", all)
}

func (l *lifecycle) OnListenerUpdated(name string) {
	configs, partial := configsToDrain(name, true, false)
	if partial {
		l.log(host.LogInfo, fmt.Sprintf("tdspool: listener %s updated in place (fewer new tdspool configs than old ones): "+
			"nothing drained by tdspool; Envoy closes the replaced filter chains' connections at --drain-time-s", name))
	}
	l.drain("listener "+name+" updated", configs)
}

func (l *lifecycle) OnListenerRemoved(name string) {
	configs, _ := configsToDrain(name, false, false)
	l.drain("listener "+name+" removed", configs)
}

func (l *lifecycle) OnShutdown() {}

func (l *lifecycle) drain(why string, configs []*Factory) {
	for _, f := range configs {
		if f.beginDrain() {
			l.log(host.LogInfo, fmt.Sprintf("tdspool: %s: draining config (stat_prefix %q): sessions in a transaction close when it ends, the rest in %s",
				why, f.cfg.StatPrefix, f.drainTimeout()))
		}
	}
}

// envoyDrainTime is Envoy's --drain-time-s (from this process's command line), else Envoy's
// default of 600 s.
func envoyDrainTime() time.Duration {
	const envoyDefault = 600 * time.Second
	raw, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		return envoyDefault
	}
	return drainTimeFromArgs(bytes.Split(bytes.TrimRight(raw, "\x00"), []byte{0}), envoyDefault)
}

func drainTimeFromArgs(args [][]byte, def time.Duration) time.Duration {
	for i, a := range args {
		var v []byte
		switch {
		case string(a) == "--drain-time-s" && i+1 < len(args):
			v = args[i+1]
		case bytes.HasPrefix(a, []byte("--drain-time-s=")):
			v = a[len("--drain-time-s="):]
		default:
			continue
		}
		if n, err := strconv.Atoi(string(v)); err == nil && n >= 0 {
			return time.Duration(n) * time.Second
		}
	}
	return def
}
