package lookup

import (
	"crypto/subtle"
	"errors"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// keyring holds the SHA-256 of every accepted key. Comparing fixed-size hashes instead of the keys
// themselves means neither the comparison time nor an early length mismatch reveals anything about
// a key's length or prefix.
type keyring struct {
	hashes [][32]byte
	// admin marks the keys that may also erase data (lookup.admin_api_keys).
	admin []bool
}

// newKeyring accepts keys and adminKeys; a key in both is an admin key.
func newKeyring(keys, adminKeys []string) (*keyring, error) {
	ring := &keyring{}
	seen := map[[32]byte]int{}
	for i, key := range append(slices.Clip(keys), adminKeys...) {
		if key == "" {
			return nil, errors.New("lookup: empty API key")
		}
		admin := i >= len(keys)
		hash := hashKey(key)
		if at, ok := seen[hash]; ok {
			ring.admin[at] = ring.admin[at] || admin
			continue
		}
		seen[hash] = len(ring.hashes)
		ring.hashes = append(ring.hashes, hash)
		ring.admin = append(ring.admin, admin)
	}
	return ring, nil
}

func (k *keyring) enabled() bool { return len(k.hashes) > 0 }

// identify returns the id of presented if it is an accepted key, and whether it is an admin key.
// It compares against every key, always, so the time taken does not depend on which key (if any)
// matched.
func (k *keyring) identify(presented string) (id string, admin, ok bool) {
	hash := hashKey(presented)
	matched, matchedAdmin := 0, 0
	for i, candidate := range k.hashes {
		equal := subtle.ConstantTimeCompare(hash[:], candidate[:])
		matched |= equal
		if k.admin[i] {
			matchedAdmin |= equal
		}
	}
	if matched != 1 {
		return "", false, false
	}
	return keyID(hash), matchedAdmin == 1, true
}

// presentedKey reads the key from "Authorization: Bearer KEY" or "X-API-Key: KEY".
func presentedKey(r *http.Request) string {
	if header := r.Header.Get("Authorization"); header != "" {
		scheme, value, found := strings.Cut(header, " ")
		if found && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(value)
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// limiter is one token bucket per client (key id, or remote IP without keys).
type limiter struct {
	rate    float64 // tokens per second; 0 disables limiting
	burst   float64
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds memory when clients are identified by address: past it, full buckets (clients
// idle long enough to have refilled) are dropped, which loses nothing.
const maxBuckets = 10000

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: burst, now: now, buckets: map[string]*bucket{}}
}

// take spends cost tokens of client's bucket. When there are not enough it returns false and how
// long until there will be.
func (l *limiter) take(client string, cost float64) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.rate)
		b.last = now
	}
	// The epsilon keeps ten 0.1-token reads from being refused over rounding.
	if b.tokens+1e-9 >= cost {
		b.tokens -= cost
		return true, 0
	}
	wait := time.Duration((cost - b.tokens) / l.rate * float64(time.Second))
	wait = max(wait, time.Millisecond)
	return false, wait
}

func (l *limiter) prune(now time.Time) {
	for client, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, client)
		}
	}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
