package directory

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// HTTP paths. The first two are the fixed client and relay API; the others
// are between authorities.
const (
	descriptorPath = "/chive/v1/descriptor"
	consensusPath  = "/chive/v1/consensus"
	votePath       = "/chive/v1/vote"
	signaturePath  = "/chive/v1/signature"
	signaturesPath = "/chive/v1/signatures"
)

// maxSignatureBody bounds a POSTed signature line.
const maxSignatureBody = 1 << 10

// Handler returns the authority's HTTP API:
//
//	POST /chive/v1/descriptor            a relay's signed descriptor
//	GET  /chive/v1/consensus             the consensus being served
//	POST /chive/v1/vote                  another authority's vote for the round being voted on
//	GET  /chive/v1/vote/{va}             this authority's vote for the period starting at va (Unix seconds)
//	GET  /chive/v1/vote/{va}?authority=ID  any vote held for that period
//	POST /chive/v1/signature/{va}        one "authority-signature ID SIG" line over the consensus for va
//	GET  /chive/v1/signatures/{va}       every signature held over this authority's consensus for va
//
// Answers are text/plain; errors are one line saying what is wrong.
func (a *Authority) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+descriptorPath, a.handleDescriptor)
	mux.HandleFunc("GET "+consensusPath, a.handleConsensus)
	mux.HandleFunc("POST "+votePath, a.handlePostVote)
	mux.HandleFunc("GET "+votePath+"/{va}", a.handleGetVote)
	mux.HandleFunc("POST "+signaturePath+"/{va}", a.handlePostSignature)
	mux.HandleFunc("GET "+signaturesPath+"/{va}", a.handleGetSignatures)
	return mux
}

// reply writes a one-line text answer.
func reply(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, oneLine(msg)+"\n")
}

// document writes a document.
func document(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// readBody reads the whole body, at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("%s larger than %d bytes", what, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	return b, nil
}

func (a *Authority) handleDescriptor(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r, netdoc.MaxDescriptorSize, "descriptor")
	if err != nil {
		a.m.descriptorUploads.WithLabelValues("refused").Inc()
		reply(w, http.StatusBadRequest, "refused: "+err.Error())
		return
	}
	status, msg := a.acceptDescriptor(b)
	reply(w, status, msg)
}

// acceptDescriptor verifies and keeps an uploaded descriptor. It returns
// the HTTP status and the one-line answer for the relay.
func (a *Authority) acceptDescriptor(b []byte) (int, string) {
	now := a.now()
	d, err := netdoc.ParseDescriptorWithLimits(b, now, a.descLimits)
	if err != nil {
		a.m.descriptorUploads.WithLabelValues("refused").Inc()
		a.log.Debug("descriptor refused", zap.Error(err))
		return http.StatusBadRequest, "refused: " + err.Error()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old, held := a.descs[d.ID]
	switch {
	case held && old.d.Digest() == d.Digest():
		a.m.descriptorUploads.WithLabelValues("unchanged").Inc()
		return http.StatusOK, "accepted"
	case held && d.Published.Before(old.d.Published):
		a.m.descriptorUploads.WithLabelValues("refused").Inc()
		return http.StatusBadRequest, fmt.Sprintf("refused: this descriptor was published at %s, but the authority holds a newer one from %s; publish a fresh descriptor",
			d.Published.Format(time.RFC3339), old.d.Published.Format(time.RFC3339))
	case !held && len(a.descs) >= a.maxDescs:
		a.m.descriptorUploads.WithLabelValues("refused").Inc()
		a.log.Warn("descriptor refused: this authority holds its maximum number of relays (max_descriptors)", zap.Int("max", a.maxDescs))
		return http.StatusServiceUnavailable, fmt.Sprintf("refused: this authority already tracks its maximum of %d relays; retry later", a.maxDescs)
	}
	if err := a.store.putDescriptor(d.ID, b); err != nil {
		a.log.Error("could not store a descriptor", zap.Error(err))
		return http.StatusInternalServerError, "the authority could not store the descriptor; retry later"
	}
	a.descs[d.ID] = heldDesc{d: d, raw: b}
	a.m.descriptorUploads.WithLabelValues("accepted").Inc()
	a.m.descriptorsHeld.Set(float64(len(a.descs)))
	a.log.Debug("descriptor accepted", zap.String("relay", d.ID.Short()), zap.String("nickname", d.Nickname),
		obs.Addr(d.Addr.String(), a.unsafe))
	if !a.reachableLocked(heldDesc{d: d}, now) {
		select {
		case a.toTest <- d.ID:
		default: // tested at the start of the next period
		}
	}
	return http.StatusOK, "accepted"
}

func (a *Authority) handleConsensus(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	raw := a.currentRaw
	a.mu.Unlock()
	if raw == nil {
		reply(w, http.StatusNotFound, "this authority has no consensus yet; ask another authority or retry after the next voting period")
		return
	}
	document(w, raw)
}

func (a *Authority) handlePostVote(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r, netdoc.MaxVoteSize, "vote")
	if err != nil {
		a.m.votesReceived.WithLabelValues("refused").Inc()
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	status, msg := a.acceptVote(b)
	reply(w, status, msg)
}

// acceptVote verifies a pushed vote and keeps it if it is for the round
// being voted on, on the schedule this authority is on (initial or
// normal), and voting has not closed.
func (a *Authority) acceptVote(b []byte) (int, string) {
	now := a.now()
	v, err := netdoc.ParseVote(b, a.auths, now)
	if err != nil {
		a.m.votesReceived.WithLabelValues("refused").Inc()
		return http.StatusBadRequest, "refused: " + err.Error()
	}
	p := a.schedule(now)
	va := netdoc.PeriodStart(now, p).Add(p)
	closes := phaseTime(va, p, phaseCloseVoting)
	if !v.ValidAfter.Equal(va) || !now.Before(closes) {
		a.m.votesReceived.WithLabelValues("refused").Inc()
		next := va
		if !now.Before(closes) {
			next = va.Add(p)
		}
		return http.StatusConflict, fmt.Sprintf("refused: a vote for the period starting %s, but this authority, on %s, takes votes for the period starting %s from %s to %s (check both clocks, voting_period and initial_voting_period)",
			v.ValidAfter.Format(time.RFC3339), a.scheduleName(p), next.Format(time.RFC3339Nano),
			phaseTime(next, p, 0).Format(time.RFC3339Nano), phaseTime(next, p, phaseCloseVoting).Format(time.RFC3339Nano))
	}
	a.mu.Lock()
	rd := a.roundLocked(va)
	a.mu.Unlock()
	return a.addVote(rd, heldVote{v: v, raw: b}, "push")
}

// parseVA reads the {va} path value: Unix seconds.
func parseVA(r *http.Request) (time.Time, error) {
	n, err := strconv.ParseInt(r.PathValue("va"), 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("%q is not a period start in Unix seconds", r.PathValue("va"))
	}
	return time.Unix(n, 0).UTC(), nil
}

func (a *Authority) handleGetVote(w http.ResponseWriter, r *http.Request) {
	va, err := parseVA(r)
	if err != nil {
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	id := a.id
	if s := r.URL.Query().Get("authority"); s != "" {
		if id, err = layercrypt.ParseRelayID(s); err != nil {
			reply(w, http.StatusBadRequest, fmt.Sprintf("authority=%q is not an authority ID", s))
			return
		}
	}
	a.mu.Lock()
	var raw []byte
	if rd := a.rounds[va.Unix()]; rd != nil {
		raw = rd.votes[id].raw
	}
	a.mu.Unlock()
	if raw == nil {
		reply(w, http.StatusNotFound, fmt.Sprintf("no vote from %s for the period starting %s here", id, va.Format(time.RFC3339)))
		return
	}
	document(w, raw)
}

func (a *Authority) handlePostSignature(w http.ResponseWriter, r *http.Request) {
	va, err := parseVA(r)
	if err != nil {
		a.m.signaturesReceived.WithLabelValues("refused").Inc()
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	b, err := readBody(w, r, maxSignatureBody, "signature")
	if err != nil {
		a.m.signaturesReceived.WithLabelValues("refused").Inc()
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	s, err := netdoc.ParseSignatureLine(b)
	if err != nil {
		a.m.signaturesReceived.WithLabelValues("refused").Inc()
		reply(w, http.StatusBadRequest, "refused: "+err.Error())
		return
	}
	status, msg := a.acceptSignature(va, s)
	reply(w, status, msg)
}

// acceptSignature takes another authority's signature over the consensus
// for va: added at once if this authority has computed that consensus,
// held until it has if the round is under way.
func (a *Authority) acceptSignature(va time.Time, s netdoc.Signature) (int, string) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	rd := a.rounds[va.Unix()]
	p := a.scheduleLocked(now)
	if rd == nil && va.Equal(netdoc.PeriodStart(now, p).Add(p)) {
		rd = a.roundLocked(va)
	}
	if rd == nil {
		a.m.signaturesReceived.WithLabelValues("refused").Inc()
		return http.StatusConflict, fmt.Sprintf("refused: this authority, on %s, has no voting round for the period starting %s",
			a.scheduleName(p), va.Format(time.RFC3339))
	}
	if rd.cons == nil {
		if !slices.Contains(a.auths, s.Authority) {
			a.m.signaturesReceived.WithLabelValues("refused").Inc()
			return http.StatusBadRequest, fmt.Sprintf("refused: signature from %s, which is not a configured authority", s.Authority)
		}
		if rd.failed {
			a.m.signaturesReceived.WithLabelValues("refused").Inc()
			return http.StatusConflict, "refused: this authority could not compute a consensus for this period (too few votes)"
		}
		rd.early[s.Authority] = s
		a.m.signaturesReceived.WithLabelValues("early").Inc()
		return http.StatusAccepted, "held until this authority has computed its consensus"
	}
	return a.addSignatureLocked(rd, s, "push")
}

func (a *Authority) handleGetSignatures(w http.ResponseWriter, r *http.Request) {
	va, err := parseVA(r)
	if err != nil {
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	a.mu.Lock()
	var b []byte
	if rd := a.rounds[va.Unix()]; rd != nil && rd.cons != nil {
		for _, s := range rd.cons.Signatures {
			b = append(b, s.Line()...)
		}
	}
	a.mu.Unlock()
	if b == nil {
		reply(w, http.StatusNotFound, fmt.Sprintf("no consensus for the period starting %s here", va.Format(time.RFC3339)))
		return
	}
	document(w, b)
}
