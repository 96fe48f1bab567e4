package lookup

import (
	"crypto/subtle"
	"errors"
	"fmt"
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
	// scope is each key's index in scopes, or -1 for a key that sees every camera.
	scope  []int
	scopes []*cameraScope
}

// keyIdentity is who presented a key: its id (as in the audit log), whether it is an admin key,
// and the cameras it may see (nil: all of them).
type keyIdentity struct {
	id    string
	admin bool
	scope *cameraScope
}

// newKeyring accepts keys, adminKeys and the keys of scopes; a key in keys and adminKeys is an
// admin key. A scoped key must be in no other list: whichever it was taken as, one of the two
// meanings would widen or narrow what its holder sees without anyone having chosen it.
func newKeyring(keys, adminKeys []string, scopes []KeyScope) (*keyring, error) {
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
		ring.scope = append(ring.scope, -1)
	}
	for i, scope := range scopes {
		built, err := newCameraScope(scope)
		if err != nil {
			return nil, err
		}
		if ring.scopeNamed(scope.Name) != nil {
			return nil, fmt.Errorf("lookup: two key scopes are named %s; a scope's name owns its watches", scope.Name)
		}
		ring.scopes = append(ring.scopes, built)
		for _, key := range scope.Keys {
			if key == "" {
				return nil, fmt.Errorf("lookup: empty API key in scope %s", scope.Name)
			}
			hash := hashKey(key)
			if at, ok := seen[hash]; ok {
				if ring.scope[at] == i {
					continue
				}
				return nil, fmt.Errorf("lookup: a key of scope %s is also %s; give each scope keys of its own", scope.Name, ring.describe(at))
			}
			seen[hash] = len(ring.hashes)
			ring.hashes = append(ring.hashes, hash)
			ring.admin = append(ring.admin, false)
			ring.scope = append(ring.scope, i)
		}
	}
	return ring, nil
}

// describe names what key at is, for an error message that must not show the key itself.
func (k *keyring) describe(at int) string {
	switch {
	case k.scope[at] >= 0:
		return "a key of scope " + k.scopes[k.scope[at]].name
	case k.admin[at]:
		return "an admin key"
	}
	return "an unscoped API key"
}

func (k *keyring) enabled() bool { return len(k.hashes) > 0 }

// scopeNamed is the scope called name, or nil when there is none.
func (k *keyring) scopeNamed(name string) *cameraScope {
	for _, scope := range k.scopes {
		if scope.name == name {
			return scope
		}
	}
	return nil
}

// identify says whose presented is, if it is an accepted key. It compares against every key,
// always, so the time taken does not depend on which key (if any) matched.
func (k *keyring) identify(presented string) (keyIdentity, bool) {
	hash := hashKey(presented)
	matched, matchedAdmin, scope := 0, 0, -1
	for i, candidate := range k.hashes {
		equal := subtle.ConstantTimeCompare(hash[:], candidate[:])
		matched |= equal
		if k.admin[i] {
			matchedAdmin |= equal
		}
		scope = subtle.ConstantTimeSelect(equal, k.scope[i], scope)
	}
	if matched != 1 {
		return keyIdentity{}, false
	}
	identity := keyIdentity{id: keyID(hash), admin: matchedAdmin == 1}
	if scope >= 0 {
		identity.scope = k.scopes[scope]
	}
	return identity, true
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
