package coordinator

import "time"

// Metrics receives the coordinator's measurements. The filter implements it
// with Envoy stats. Methods are called from coordinator goroutines (never
// from inside Acquire, Release or Cancel), concurrently for different
// buckets; they must be cheap, thread-safe and must not call back into the
// Coordinator.
type Metrics interface {
	// AcquireDone counts one acquire by outcome, with the time it waited.
	AcquireDone(bucket string, o Outcome, fallback bool, waited time.Duration)
	// QueueLength reports this proxy's waiters and the fleet-wide queue
	// (as of the last Redis reply) for a bucket.
	QueueLength(bucket string, local, fleet int)
	// RedisCall reports one script call: op is "acquire", "release",
	// "heartbeat" or "setcap"; err is nil on success.
	RedisCall(bucket, op string, d time.Duration, err error)
	// FallbackActive reports entering (true) or leaving (false) the local
	// fallback quota for a bucket.
	FallbackActive(bucket string, active bool)
	// LeasesRenewed counts leases renewed by a heartbeat; reasserted is the
	// part Redis had lost (data loss, outage, or expiry) and took back.
	LeasesRenewed(bucket string, renewed, reasserted int)
	// LeasesExpired counts leases (of any proxy) whose TTL ran out and that a
	// call from this proxy reaped.
	LeasesExpired(bucket string, n int)
	// Enforced reports, after every successful call, the cap Redis enforces
	// for the bucket and its operator state.
	Enforced(bucket string, cap int, state State)
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) AcquireDone(string, Outcome, bool, time.Duration) {}
func (NopMetrics) QueueLength(string, int, int)                     {}
func (NopMetrics) RedisCall(string, string, time.Duration, error)   {}
func (NopMetrics) FallbackActive(string, bool)                      {}
func (NopMetrics) LeasesRenewed(string, int, int)                   {}
func (NopMetrics) LeasesExpired(string, int)                        {}
func (NopMetrics) Enforced(string, int, State)                      {}
