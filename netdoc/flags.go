package netdoc

import (
	"bytes"
	"slices"
	"time"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
)

// FlagParams are the thresholds of AssignFlags.
type FlagParams struct {
	// Testnet relaxes the rules for a local test network: relays on
	// private and loopback addresses can be Valid, and a relay is an Exit
	// if its summary accepts any port at all.
	Testnet bool
	// FastGuarantee: a relay with at least this bandwidth (bytes/s) is
	// always Fast.
	FastGuarantee uint64
	// StableMinUptime: the uptime a relay needs for Stable.
	StableMinUptime time.Duration
	// GuardMinUptime: the uptime a relay needs for Guard.
	GuardMinUptime time.Duration
	// GuardBandwidthGuarantee: a relay with at least this bandwidth
	// passes Guard's bandwidth test whatever the median is.
	GuardBandwidthGuarantee uint64
	// MaxDescriptorAge: descriptors published longer ago than this are
	// left out of the vote.
	MaxDescriptorAge time.Duration
}

// DefaultFlagParams returns the thresholds for a public network (Tor's
// values where Tor has one).
func DefaultFlagParams() FlagParams {
	return FlagParams{
		FastGuarantee:           100 << 10,          // 100 KiB/s (Tor: AuthDirFastGuarantee)
		StableMinUptime:         5 * 24 * time.Hour, // Tor: 5 days of MTBF guarantees Stable
		GuardMinUptime:          8 * 24 * time.Hour, // Tor: known for 8 days
		GuardBandwidthGuarantee: 2 << 20,            // 2 MiB/s (Tor: AuthDirGuardBWGuarantee)
		MaxDescriptorAge:        DefaultDescriptorMaxAge,
	}
}

// TestnetFlagParams returns thresholds for a local test network: every
// reachable relay is Fast, Stable and Guard at once, private addresses are
// Valid, and any open port makes an Exit.
func TestnetFlagParams() FlagParams {
	return FlagParams{Testnet: true, MaxDescriptorAge: DefaultDescriptorMaxAge}
}

// exitPorts are the ports of the Exit flag rule.
var exitPorts = []uint16{80, 443, 6667}

// AssignFlags builds an authority's vote entries from the descriptors it
// holds (signed or parsed, so that each has a Digest) and the results of
// its reachability tests. The rules, all written down in docs/DIRECTORY.md:
//
//   - Only the newest descriptor of each relay counts (ties: the smaller
//     digest); descriptors older than MaxDescriptorAge are left out.
//   - Running: reachable[ID] is true (the authority opened a link and saw
//     the relay's identity).
//   - Valid: the IPv4 address (and the IPv6 address, if any) is public, see
//     exitpolicy.IsPrivate; in Testnet mode every address is.
//   - The following need Running and Valid. Among those relays:
//   - Fast: bandwidth >= FastGuarantee, or bandwidth >= that of the relay
//     at the 1/8 position of the ascending bandwidth list (the top 7/8 are
//     Fast).
//   - Stable: uptime >= StableMinUptime, where uptime is the descriptor's
//     uptime plus the time since it was published.
//   - Guard: Fast, Stable, uptime >= GuardMinUptime, and bandwidth >=
//     GuardBandwidthGuarantee or >= the low median bandwidth of the Fast
//     relays.
//   - Exit: the exit-policy summary accepts at least two of ports 80, 443
//     and 6667; in Testnet mode, at least one port.
//
// Entries come back sorted by ID, with the descriptor's advertised
// bandwidth and no measurement.
func AssignFlags(descs []*Descriptor, reachable map[layercrypt.RelayID]bool, now time.Time, p FlagParams) ([]VoteEntry, error) {
	newest := make(map[layercrypt.RelayID]*Descriptor, len(descs))
	for _, d := range descs {
		if d.Digest().IsZero() {
			return nil, errorf(ErrBadValue, "descriptor of %s has no digest; sign or parse it first", d.ID)
		}
		if p.MaxDescriptorAge > 0 && now.Sub(d.Published) > p.MaxDescriptorAge {
			continue
		}
		o, ok := newest[d.ID]
		if ok {
			c := d.Published.Compare(o.Published)
			if c < 0 || (c == 0 && bytes.Compare(d.digest[:], o.digest[:]) >= 0) {
				continue
			}
		}
		newest[d.ID] = d
	}
	list := make([]*Descriptor, 0, len(newest))
	for _, d := range newest {
		list = append(list, d)
	}
	slices.SortFunc(list, func(a, b *Descriptor) int { return compareIDs(a.ID, b.ID) })

	type info struct {
		summary   exitpolicy.Summary
		uptime    time.Duration
		valid     bool
		candidate bool // Running and Valid
	}
	infos := make([]info, len(list))
	var bws []uint64
	for i, d := range list {
		in := &infos[i]
		in.summary = d.Policy.Summary()
		in.uptime = d.Uptime
		if since := now.Sub(d.Published); since > 0 {
			in.uptime += since
		}
		in.valid = p.Testnet || (!exitpolicy.IsPrivate(d.Addr.Addr()) && (!d.Addr6.IsValid() || !exitpolicy.IsPrivate(d.Addr6.Addr())))
		in.candidate = reachable[d.ID] && in.valid
		if in.candidate {
			bws = append(bws, d.Bandwidth)
		}
	}
	slices.Sort(bws)
	var fastQuantile uint64
	if len(bws) > 0 {
		fastQuantile = bws[len(bws)/8]
	}
	isFast := func(bw uint64) bool { return bw >= p.FastGuarantee || bw >= fastQuantile }
	var fastBWs []uint64
	for _, bw := range bws {
		if isFast(bw) {
			fastBWs = append(fastBWs, bw)
		}
	}
	var guardMedian uint64
	if len(fastBWs) > 0 {
		guardMedian = fastBWs[(len(fastBWs)-1)/2]
	}

	out := make([]VoteEntry, len(list))
	for i, d := range list {
		in := infos[i]
		var f Flags
		if reachable[d.ID] {
			f |= FlagRunning
		}
		if in.valid {
			f |= FlagValid
		}
		if in.candidate {
			if isFast(d.Bandwidth) {
				f |= FlagFast
			}
			if in.uptime >= p.StableMinUptime {
				f |= FlagStable
			}
			if f.Has(FlagFast|FlagStable) && in.uptime >= p.GuardMinUptime &&
				(d.Bandwidth >= p.GuardBandwidthGuarantee || d.Bandwidth >= guardMedian) {
				f |= FlagGuard
			}
			open := 0
			for _, port := range exitPorts {
				if in.summary.AllowsPort(port) {
					open++
				}
			}
			if open >= 2 || (p.Testnet && in.summary.AcceptsAny()) {
				f |= FlagExit
			}
		}
		out[i] = VoteEntry{
			RelayStatus: RelayStatus{
				Nickname:     d.Nickname,
				ID:           d.ID,
				OnionKey:     d.OnionKey,
				Addr:         d.Addr,
				Addr6:        d.Addr6,
				Flags:        f,
				ExitPolicy:   in.summary,
				DelayClasses: slices.Clone(d.DelayClasses),
				Family:       slices.Clone(d.Family),
				Protocols:    slices.Clone(d.Protocols),
			},
			Advertised: d.Bandwidth,
			Descriptor: d.Digest(),
			Published:  d.Published.UTC(),
		}
	}
	return out, nil
}
