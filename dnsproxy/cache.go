package dnsproxy

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// DefaultCacheEntries is the per-isolation-key bound when
	// ServerConfig.CacheEntries is 0.
	DefaultCacheEntries = 1024
	// maxCacheKeys bounds how many isolation keys have a cache at once; the
	// least recently used key's cache is dropped whole.
	maxCacheKeys = 64
	// maxCacheBytes bounds the cache's memory, counted as wire bytes plus
	// entryOverhead per entry (an estimate: unpacked messages are larger
	// than their wire form by a small factor).
	maxCacheBytes = 16 << 20
	// entryOverhead is the bookkeeping estimate added per entry.
	entryOverhead = 512
)

// answerCache holds answers per isolation key. Each key has its own LRU of
// at most perKey entries; the keys themselves form an LRU of at most
// maxKeys. Stored messages are never modified: makeReply copies them.
type answerCache struct {
	perKey   int
	maxKeys  int
	maxBytes int

	mu    sync.Mutex // guards the following fields
	keys  *list.List // of *keyCache, most recently used at the front
	byKey map[string]*list.Element
	bytes int // sum of entry sizes over all keys
}

// keyCache is one isolation key's LRU.
type keyCache struct {
	iso     string
	lru     *list.List // of *cacheEntry, most recently used at the front
	entries map[queryKey]*list.Element
}

type cacheEntry struct {
	key     queryKey
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
	size    int
}

// clear drops every entry of every key.
func (c *answerCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys.Init()
	clear(c.byKey)
	c.bytes = 0
}

func newAnswerCache(perKey, maxKeys, maxBytes int) *answerCache {
	return &answerCache{
		perKey:   perKey,
		maxKeys:  maxKeys,
		maxBytes: maxBytes,
		keys:     list.New(),
		byKey:    make(map[string]*list.Element),
	}
}

// get returns the cached answer for (iso, k) and its age in whole seconds,
// or ok=false if there is none that is still valid at now.
func (c *answerCache) get(iso string, k queryKey, now time.Time) (msg *dns.Msg, age uint32, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ke, found := c.byKey[iso]
	if !found {
		return nil, 0, false
	}
	kc := ke.Value.(*keyCache)
	el, found := kc.entries[k]
	if !found {
		return nil, 0, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.removeLocked(ke, el)
		return nil, 0, false
	}
	c.keys.MoveToFront(ke)
	kc.lru.MoveToFront(el)
	return e.msg, uint32(now.Sub(e.stored) / time.Second), true
}

// put stores msg for (iso, k) for ttl from now. size is the answer's wire
// length.
func (c *answerCache) put(iso string, k queryKey, msg *dns.Msg, size int, ttl time.Duration, now time.Time) {
	if ttl <= 0 || c.perKey <= 0 {
		return
	}
	size += entryOverhead
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ke, found := c.byKey[iso]
	if !found {
		for c.keys.Len() >= c.maxKeys {
			c.dropKeyLocked(c.keys.Back())
		}
		ke = c.keys.PushFront(&keyCache{
			iso:     iso,
			lru:     list.New(),
			entries: make(map[queryKey]*list.Element),
		})
		c.byKey[iso] = ke
	} else {
		c.keys.MoveToFront(ke)
	}
	kc := ke.Value.(*keyCache)
	if el, found := kc.entries[k]; found {
		// A newer answer for the same question replaces the old one.
		e := el.Value.(*cacheEntry)
		c.bytes += size - e.size
		e.msg, e.stored, e.expires, e.size = msg, now, now.Add(ttl), size
		kc.lru.MoveToFront(el)
	} else {
		for kc.lru.Len() >= c.perKey {
			c.removeEntryLocked(kc, kc.lru.Back())
		}
		e := &cacheEntry{key: k, msg: msg, stored: now, expires: now.Add(ttl), size: size}
		kc.entries[k] = kc.lru.PushFront(e)
		c.bytes += size
	}
	c.shrinkLocked()
}

// shrinkLocked evicts the least recently used entries of the least recently
// used keys until the byte bound holds. The entry just stored is the most
// recently used one of the most recently used key, so it goes last, and
// alone it fits.
func (c *answerCache) shrinkLocked() {
	for c.bytes > c.maxBytes {
		victim := c.keys.Back()
		c.removeLocked(victim, victim.Value.(*keyCache).lru.Back())
	}
}

// removeEntryLocked removes one entry of kc.
func (c *answerCache) removeEntryLocked(kc *keyCache, el *list.Element) {
	e := kc.lru.Remove(el).(*cacheEntry)
	delete(kc.entries, e.key)
	c.bytes -= e.size
}

// removeLocked removes one entry; a key left empty is dropped.
func (c *answerCache) removeLocked(ke, el *list.Element) {
	kc := ke.Value.(*keyCache)
	c.removeEntryLocked(kc, el)
	if kc.lru.Len() == 0 {
		c.keys.Remove(ke)
		delete(c.byKey, kc.iso)
	}
}

// dropKeyLocked drops a key's whole cache.
func (c *answerCache) dropKeyLocked(ke *list.Element) {
	kc := ke.Value.(*keyCache)
	for el := kc.lru.Front(); el != nil; el = el.Next() {
		c.bytes -= el.Value.(*cacheEntry).size
	}
	c.keys.Remove(ke)
	delete(c.byKey, kc.iso)
}

// len reports the number of entries for iso (tests) and in all.
func (c *answerCache) len(iso string) (forKey, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ke, ok := c.byKey[iso]; ok {
		forKey = ke.Value.(*keyCache).lru.Len()
	}
	for ke := c.keys.Front(); ke != nil; ke = ke.Next() {
		total += ke.Value.(*keyCache).lru.Len()
	}
	return forKey, total
}
