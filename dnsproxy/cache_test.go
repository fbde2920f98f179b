package dnsproxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func key(i int) queryKey {
	return queryKey{name: fmt.Sprintf("n%d.chive.test.", i), qtype: dns.TypeA, qclass: dns.ClassINET}
}

func TestAnswerCacheBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	msg := new(dns.Msg)

	t.Run("per key LRU", func(t *testing.T) {
		c := newAnswerCache(3, 10, 1<<20)
		for i := range 4 {
			c.put("a", key(i), msg, 100, time.Minute, now)
			if i == 1 {
				c.get("a", key(0), now) // 0 is now more recent than 1
			}
		}
		if _, _, ok := c.get("a", key(1), now); ok {
			t.Error("least recently used entry survived")
		}
		for _, i := range []int{0, 2, 3} {
			if _, _, ok := c.get("a", key(i), now); !ok {
				t.Errorf("entry %d evicted", i)
			}
		}
		// Another key has its own bound.
		for i := range 3 {
			c.put("b", key(i), msg, 100, time.Minute, now)
		}
		if forKey, total := c.len("a"); forKey != 3 || total != 6 {
			t.Errorf("len: got %d/%d, want 3/6", forKey, total)
		}
	})

	t.Run("isolation keys", func(t *testing.T) {
		c := newAnswerCache(3, 2, 1<<20)
		c.put("a", key(0), msg, 100, time.Minute, now)
		if _, _, ok := c.get("b", key(0), now); ok {
			t.Error("key b sees key a's entry")
		}
		c.put("b", key(0), msg, 100, time.Minute, now)
		c.get("a", key(0), now) // a more recent than b
		c.put("c", key(0), msg, 100, time.Minute, now)
		if _, _, ok := c.get("b", key(0), now); ok {
			t.Error("least recently used key survived")
		}
		if _, _, ok := c.get("a", key(0), now); !ok {
			t.Error("key a dropped")
		}
	})

	t.Run("bytes", func(t *testing.T) {
		c := newAnswerCache(100, 10, 10*(1000+entryOverhead))
		for i := range 10 {
			c.put(fmt.Sprint("k", i%3), key(i), msg, 1000, time.Minute, now)
		}
		c.put("k0", key(99), msg, 1000, time.Minute, now)
		if _, total := c.len(""); total != 10 {
			t.Errorf("entries: got %d, want 10", total)
		}
		if c.bytes > c.maxBytes {
			t.Errorf("bytes %d above %d", c.bytes, c.maxBytes)
		}
		if _, _, ok := c.get("k0", key(99), now); !ok {
			t.Error("newest entry evicted")
		}
		// Too large alone: not stored.
		c.put("k0", key(100), msg, c.maxBytes, time.Minute, now)
		if _, _, ok := c.get("k0", key(100), now); ok {
			t.Error("an entry above the byte bound was stored")
		}
	})

	t.Run("expiry and age", func(t *testing.T) {
		c := newAnswerCache(10, 10, 1<<20)
		c.put("a", key(0), msg, 100, 10*time.Second, now)
		if _, age, ok := c.get("a", key(0), now.Add(9999*time.Millisecond)); !ok || age != 9 {
			t.Errorf("before expiry: ok %v age %d, want true 9", ok, age)
		}
		if _, _, ok := c.get("a", key(0), now.Add(10*time.Second)); ok {
			t.Error("served at expiry")
		}
		if _, total := c.len("a"); total != 0 || c.bytes != 0 {
			t.Errorf("expired entry kept: %d entries, %d bytes", total, c.bytes)
		}
	})

	t.Run("replace", func(t *testing.T) {
		c := newAnswerCache(10, 10, 1<<20)
		m2 := new(dns.Msg)
		c.put("a", key(0), msg, 100, time.Second, now)
		c.put("a", key(0), m2, 300, time.Minute, now.Add(time.Second))
		got, age, ok := c.get("a", key(0), now.Add(30*time.Second))
		if !ok || got != m2 || age != 29 {
			t.Errorf("replaced entry: ok %v same %v age %d", ok, got == m2, age)
		}
		if c.bytes != 300+entryOverhead {
			t.Errorf("bytes: got %d, want %d", c.bytes, 300+entryOverhead)
		}
	})

	t.Run("no TTL, no cache", func(t *testing.T) {
		c := newAnswerCache(10, 10, 1<<20)
		c.put("a", key(0), msg, 100, 0, now)
		if _, total := c.len(""); total != 0 {
			t.Error("stored with TTL 0")
		}
	})
}
