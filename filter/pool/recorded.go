package pool

import (
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Recorded returns key's recorded login reply when a client of key may be answered with it
// without a backend of its own (transaction pooling: the client borrows a backend only per
// request). The conditions are Borrow's, without needing an idle backend: the key's credential
// is this password's, its last real login is within ReauthAfter, a reply was recorded and the
// pool is not draining. Otherwise it says why, and the client logs in for real.
func (p *Pool[C]) Recorded(key Key, now time.Time) (*tds.LoginReply, Miss) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kp, miss := p.servable(key, now)
	if miss != Hit {
		return nil, miss
	}
	p.stats.loginsSaved++
	return kp.reply, Hit
}

// Count is how many backends the pool holds, idle and lent out (each holds a slot).
func (p *Pool[C]) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle + p.active
}
