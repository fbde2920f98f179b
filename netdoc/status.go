package netdoc

import (
	"net/netip"
	"strings"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
)

// RelayStatus is what votes and the consensus both say about one relay:
// everything a client needs to build a circuit through it.
type RelayStatus struct {
	Nickname     string
	ID           layercrypt.RelayID
	OnionKey     layercrypt.OnionPublicKey
	Addr         netip.AddrPort // IPv4
	Addr6        netip.AddrPort // optional IPv6 (zero: none)
	Flags        Flags
	ExitPolicy   exitpolicy.Summary // port summary of the relay's exit policy
	DelayClasses []uint8
	Family       []layercrypt.RelayID // as the relay declared it (see Consensus.SameFamily)
	Protocols    Protocols
}

// Relay entry keywords, in order. "w" and "m" differ between votes and the
// consensus.
const (
	kwR  = "r"  // r NICKNAME ID ONIONKEY
	kwA  = "a"  // a IPV4:PORT [[IPV6]:PORT]
	kwS  = "s"  // s FLAG...
	kwW  = "w"  // bandwidth
	kwP  = "p"  // p accept|reject PORTS
	kwD  = "d"  // d CLASS...
	kwF  = "f"  // f ID...
	kwPr = "pr" // pr NAME=VERSIONS...
	kwM  = "m"  // m DIGEST PUBLISHED (votes only)
)

func (rs *RelayStatus) validate(known Flags) error {
	if err := checkNickname(rs.Nickname); err != nil {
		return err
	}
	if rs.ID.IsZero() {
		return errorf(ErrBadValue, "relay ID is not set")
	}
	if rs.OnionKey.IsZero() {
		return errorf(ErrBadValue, "relay %s: onion key is not set", rs.ID)
	}
	if err := checkAddr4(rs.Addr); err != nil {
		return err
	}
	if rs.Addr6.IsValid() || rs.Addr6.Port() != 0 {
		if err := checkAddr6(rs.Addr6); err != nil {
			return err
		}
	}
	if rs.Flags&^known != 0 {
		return errorf(ErrBadValue, "relay %s has flags %s outside the known flags %s", rs.ID, rs.Flags&^known, known)
	}
	if err := checkDelayClasses(rs.DelayClasses); err != nil {
		return err
	}
	if err := checkFamily(rs.ID, rs.Family); err != nil {
		return err
	}
	return rs.Protocols.Validate()
}

// appendHead writes the r, a and s lines.
func (rs *RelayStatus) appendHead(b []byte) []byte {
	b = append(b, kwR+" "...)
	b = append(b, rs.Nickname...)
	b = append(b, ' ')
	b = append32(b, rs.ID)
	b = append(b, ' ')
	b = append32(b, rs.OnionKey)
	b = append(b, "\n"+kwA+" "...)
	b = rs.Addr.AppendTo(b)
	if rs.Addr6.IsValid() {
		b = append(b, ' ')
		b = rs.Addr6.AppendTo(b)
	}
	b = append(b, "\n"+kwS...)
	if rs.Flags != 0 {
		b = rs.Flags.appendText(append(b, ' '))
	}
	return append(b, '\n')
}

// appendTail writes the p, d, f and pr lines.
func (rs *RelayStatus) appendTail(b []byte) []byte {
	b = append(b, kwP+" "...)
	b = rs.ExitPolicy.AppendText(b)
	b = append(b, "\n"+kwD+" "...)
	b = appendDelayClasses(b, rs.DelayClasses)
	b = append(b, '\n')
	if len(rs.Family) > 0 {
		b = append(b, kwF+" "...)
		b = appendFamily(b, rs.Family)
		b = append(b, '\n')
	}
	b = append(b, kwPr+" "...)
	b = rs.Protocols.appendText(b)
	return append(b, '\n')
}

// parseLine handles the lines shared by vote and consensus entries.
func (rs *RelayStatus) parseLine(l *lexer, known Flags) error {
	c := &l.cur
	var err error
	switch c.kw {
	case kwR:
		if err = l.nargs(3, 3); err != nil {
			return err
		}
		rs.Nickname = strings.Clone(c.args[0]) // do not keep the whole document alive
		if err = checkNickname(rs.Nickname); err == nil {
			if rs.ID, err = parseID(c.args[1]); err == nil {
				rs.OnionKey, err = parseOnionKey(c.args[2])
			}
		}
	case kwA:
		if err = l.nargs(1, 2); err != nil {
			return err
		}
		if rs.Addr, err = parseAddrPort(c.args[0], false); err == nil && len(c.args) == 2 {
			rs.Addr6, err = parseAddrPort(c.args[1], true)
		}
	case kwS:
		if rs.Flags, err = parseFlags(c.args); err == nil && rs.Flags&^known != 0 {
			err = errorf(ErrBadValue, "flags %s are not in known-flags", rs.Flags&^known)
		}
	case kwP:
		if sum, ok := l.summaries[c.rest]; ok {
			rs.ExitPolicy = sum
			break
		}
		var perr error
		if rs.ExitPolicy, perr = exitpolicy.ParseSummary(c.rest); perr != nil {
			err = policyErr(perr)
		} else {
			if l.summaries == nil {
				l.summaries = make(map[string]exitpolicy.Summary)
			}
			l.summaries[c.rest] = rs.ExitPolicy
		}
	case kwD:
		if dc, ok := l.classes[c.rest]; ok {
			rs.DelayClasses = dc
			break
		}
		if rs.DelayClasses, err = parseDelayClasses(c.args); err == nil {
			if l.classes == nil {
				l.classes = make(map[string][]uint8)
			}
			l.classes[c.rest] = rs.DelayClasses
		}
	case kwF:
		if err = l.nargs(1, MaxFamily); err != nil {
			return err
		}
		if rs.Family, err = parseFamily(c.args); err == nil {
			err = checkFamily(rs.ID, rs.Family)
		}
	case kwPr:
		if p, ok := l.protocols[c.rest]; ok {
			rs.Protocols = p
			break
		}
		if rs.Protocols, err = parseProtocols(c.args); err == nil {
			if l.protocols == nil {
				l.protocols = make(map[string]Protocols)
			}
			l.protocols[c.rest] = rs.Protocols
		}
	default:
		return mustNotHappen("keyword %q reached parseLine", c.kw)
	}
	if err != nil {
		return l.wrap(err)
	}
	return nil
}

// readEntries reads relay entries (each starting with an "r" line) until a
// line that is not "r", checking that IDs strictly ascend. parse reads one
// entry and returns its ID.
func (l *lexer) readEntries(parse func() (layercrypt.RelayID, error)) error {
	var prev layercrypt.RelayID
	first := true
	for {
		ok, err := l.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if l.cur.kw != kwR {
			l.back()
			return nil
		}
		l.back()
		line := l.cur.num
		id, err := parse()
		if err != nil {
			return err
		}
		if !first {
			switch c := compareIDs(prev, id); {
			case c == 0:
				return &ParseError{Doc: l.docName, Line: line, Keyword: kwR, Err: errorf(ErrDuplicateEntry, "relay %s is listed twice", id)}
			case c > 0:
				return &ParseError{Doc: l.docName, Line: line, Keyword: kwR, Err: errorf(ErrUnsorted, "relay %s comes after %s; entries are sorted by ID bytes", id, prev)}
			}
		}
		prev, first = id, false
	}
}

// checkSorted checks that the n IDs returned by id strictly ascend.
func checkSorted(n int, id func(i int) layercrypt.RelayID) error {
	for i := 1; i < n; i++ {
		switch c := compareIDs(id(i-1), id(i)); {
		case c == 0:
			return errorf(ErrDuplicateEntry, "relay %s is listed twice", id(i))
		case c > 0:
			return errorf(ErrUnsorted, "relay %s comes after %s; entries are sorted by ID bytes", id(i), id(i-1))
		}
	}
	return nil
}
