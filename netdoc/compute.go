package netdoc

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

// ValidPeriods is how many voting periods a consensus stays valid:
// valid-until = valid-after + ValidPeriods × voting period, so that clients
// ride out a few failed votes (Tor uses 3 as well).
const ValidPeriods = 3

// PeriodStart returns the start of the voting period that contains t:
// t rounded down to a multiple of period since the Unix epoch (UTC).
func PeriodStart(t time.Time, period time.Duration) time.Time {
	if period < time.Second {
		period = time.Second
	}
	return time.Unix(0, 0).UTC().Add(t.Sub(time.Unix(0, 0)).Truncate(period))
}

// PeriodTimes returns fresh-until and valid-until for the period starting at
// validAfter: validAfter + period and validAfter + ValidPeriods × period.
func PeriodTimes(validAfter time.Time, period time.Duration) (freshUntil, validUntil time.Time) {
	return validAfter.Add(period), validAfter.Add(ValidPeriods * period)
}

// ComputeConsensus computes the consensus from the votes of the configured
// authorities, deterministically: given the same set of votes, in any
// order, every authority gets the same Body bytes. The votes' signatures
// must already have been checked (ParseVote). The algorithm (consensus
// method 1) is:
//
//   - More than half of the configured authorities must have voted, each
//     at most once; otherwise ErrNotEnoughVotes / ErrDuplicateVote.
//   - The method is the highest supported one listed by more than half of
//     the votes.
//   - valid-after, fresh-until, valid-until and voting-period are each the
//     low median of the votes' values (for an even count, the lower of the
//     two middle values).
//   - known-flags are the flags known by more than half of the votes.
//   - A relay is listed if more than half of all configured authorities
//     list it (not of those that voted), and if after flag voting it is
//     Running.
//   - Each known flag is set if more than half of the votes that list the
//     relay and know the flag set it; a tie leaves it unset.
//   - The descriptor-derived fields (nickname, onion key, addresses, exit
//     summary, delay classes, family, protocols, all taken together so that
//     they come from one descriptor) are those listed by the most votes;
//     ties go to the newest published descriptor, then to the entry whose
//     encoding is byte-wise smallest.
//   - The bandwidth is the low median of the listing votes' weights
//     (VoteEntry.Weight).
func ComputeConsensus(votes []*Vote, authorities []layercrypt.RelayID) (*Consensus, error) {
	auths := slices.Clone(authorities)
	slices.SortFunc(auths, compareIDs)
	auths = slices.Compact(auths)
	if len(auths) == 0 {
		return nil, ErrNoAuthorities
	}
	if len(auths) > MaxVoters {
		return nil, errorf(ErrBadValue, "%d authorities; at most %d", len(auths), MaxVoters)
	}
	vs := slices.Clone(votes)
	slices.SortFunc(vs, func(a, b *Vote) int { return compareIDs(a.Authority, b.Authority) })
	for i, v := range vs {
		if _, ok := slices.BinarySearchFunc(auths, v.Authority, compareIDs); !ok {
			return nil, errorf(ErrUnknownAuthority, "vote from %s", v.Authority)
		}
		if i > 0 && vs[i-1].Authority == v.Authority {
			return nil, errorf(ErrDuplicateVote, "authority %s", v.Authority)
		}
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("vote from %s: %w", v.Authority, err)
		}
	}
	if len(vs)*2 <= len(auths) {
		return nil, errorf(ErrNotEnoughVotes, "%d votes from %d configured authorities; need %d", len(vs), len(auths), len(auths)/2+1)
	}
	c := &Consensus{}
	for _, m := range slices.Backward(SupportedConsensusMethods) {
		n := 0
		for _, v := range vs {
			if slices.Contains(v.ConsensusMethods, m) {
				n++
			}
		}
		if n*2 > len(vs) {
			c.Method = m
			break
		}
	}
	if c.Method == 0 {
		return nil, errorf(ErrNoConsensusMethod, "this software computes methods %v", SupportedConsensusMethods)
	}
	c.ValidAfter = lowMedianTime(vs, func(v *Vote) time.Time { return v.ValidAfter })
	c.FreshUntil = lowMedianTime(vs, func(v *Vote) time.Time { return v.FreshUntil })
	c.ValidUntil = lowMedianTime(vs, func(v *Vote) time.Time { return v.ValidUntil })
	periods := make([]time.Duration, len(vs))
	for i, v := range vs {
		periods[i] = v.VotingPeriod
	}
	slices.Sort(periods)
	c.VotingPeriod = periods[(len(periods)-1)/2]
	if err := checkPeriod(c.ValidAfter, c.FreshUntil, c.ValidUntil, c.VotingPeriod); err != nil {
		return nil, fmt.Errorf("median times of the votes: %w", err)
	}
	for i := range flagNames {
		f := Flags(1 << i)
		n := 0
		for _, v := range vs {
			if v.KnownFlags.Has(f) {
				n++
			}
		}
		if n*2 > len(vs) {
			c.KnownFlags |= f
		}
	}
	c.Voters = make([]layercrypt.RelayID, len(vs))
	for i, v := range vs {
		c.Voters[i] = v.Authority
	}

	// Merge the sorted entry lists.
	next := make([]int, len(vs))
	group := make([]*VoteEntry, 0, len(vs))
	groupVotes := make([]*Vote, 0, len(vs))
	weights := make([]uint64, 0, len(vs))
	for {
		var minID layercrypt.RelayID
		found := false
		for k, v := range vs {
			if next[k] < len(v.Relays) {
				id := v.Relays[next[k]].ID
				if !found || compareIDs(id, minID) < 0 {
					minID, found = id, true
				}
			}
		}
		if !found {
			break
		}
		group, groupVotes = group[:0], groupVotes[:0]
		for k, v := range vs {
			if next[k] < len(v.Relays) && v.Relays[next[k]].ID == minID {
				group = append(group, &v.Relays[next[k]])
				groupVotes = append(groupVotes, v)
				next[k]++
			}
		}
		if len(group)*2 <= len(auths) {
			continue
		}
		var flags Flags
		for i := range flagNames {
			f := Flags(1 << i)
			if !c.KnownFlags.Has(f) {
				continue
			}
			yes, knowers := 0, 0
			for j, e := range group {
				if groupVotes[j].KnownFlags.Has(f) {
					knowers++
					if e.Flags.Has(f) {
						yes++
					}
				}
			}
			if yes*2 > knowers {
				flags |= f
			}
		}
		if !flags.Has(FlagRunning) {
			continue
		}
		best := chooseDescriptor(group)
		weights = weights[:0]
		for _, e := range group {
			weights = append(weights, e.Weight())
		}
		slices.Sort(weights)
		rs := best.RelayStatus
		rs.Flags = flags
		rs.DelayClasses = slices.Clone(rs.DelayClasses)
		rs.Family = slices.Clone(rs.Family)
		rs.Protocols = slices.Clone(rs.Protocols)
		c.Relays = append(c.Relays, ConsensusEntry{RelayStatus: rs, Bandwidth: weights[(len(weights)-1)/2]})
	}
	return c, nil
}

func lowMedianTime(vs []*Vote, get func(*Vote) time.Time) time.Time {
	ts := make([]time.Time, len(vs))
	for i, v := range vs {
		ts[i] = get(v)
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts[(len(ts)-1)/2].UTC()
}

// sameDescriptor reports whether two entries agree on every
// descriptor-derived field.
func sameDescriptor(a, b *VoteEntry) bool {
	return a.Descriptor == b.Descriptor && a.Published.Equal(b.Published) &&
		a.Nickname == b.Nickname && a.OnionKey == b.OnionKey &&
		a.Addr == b.Addr && a.Addr6 == b.Addr6 &&
		a.ExitPolicy.Equal(b.ExitPolicy) && slices.Equal(a.DelayClasses, b.DelayClasses) &&
		slices.Equal(a.Family, b.Family) && a.Protocols.Equal(b.Protocols)
}

// descriptorKey is the encoding of an entry's descriptor-derived fields,
// used only to break ties.
func descriptorKey(e *VoteEntry) []byte {
	x := *e
	x.Flags, x.Advertised, x.Measured = 0, 0, 0
	return x.appendTo(nil)
}

// chooseDescriptor picks the descriptor-derived fields listed by the most
// entries; ties go to the newest Published, then the smallest encoding.
func chooseDescriptor(group []*VoteEntry) *VoteEntry {
	if len(group) == 1 {
		return group[0]
	}
	counts := make([]int, len(group))
	for i := range group {
		for j := range group {
			if i == j || sameDescriptor(group[i], group[j]) {
				counts[i]++
			}
		}
	}
	best := 0
	for i := 1; i < len(group); i++ {
		c := cmp.Compare(counts[i], counts[best])
		if c == 0 {
			c = group[i].Published.Compare(group[best].Published)
		}
		if c == 0 && !sameDescriptor(group[i], group[best]) {
			c = -bytes.Compare(descriptorKey(group[i]), descriptorKey(group[best]))
		}
		if c > 0 {
			best = i
		}
	}
	return group[best]
}
