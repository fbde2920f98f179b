// Package directory is a chive directory authority (DESIGN.md section 7,
// docs/DIRECTORY.md section 10): it takes relays' signed descriptors,
// tests that each relay is reachable under the identity it claims, votes,
// and with the other configured authorities computes, signs and serves the
// consensus. cmd/directory is its program.
//
// # HTTP API
//
//	POST /chive/v1/descriptor              relay descriptor; 200 "accepted", 400 reason, 503 when full
//	GET  /chive/v1/consensus               the consensus being served; 404 when none yet
//	POST /chive/v1/vote                    another authority's vote (200, 400, 409)
//	GET  /chive/v1/vote/{va}[?authority=ID]  this authority's (or any held) vote for the period starting at va
//	POST /chive/v1/signature/{va}          one "authority-signature ID SIG" line (200, 202 held, 400, 409)
//	GET  /chive/v1/signatures/{va}         the signatures held over this authority's consensus for va
//
// {va} is the valid-after of the consensus voted on, in Unix seconds.
//
// # Timeline
//
// The consensus valid after va is made during the period before it,
// [s, va) with s = va - P (P the voting period, or the initial voting
// period, see below), in eighths of P:
//
//	s+0     reachability tests of every relay (also after each upload)
//	s+2P/8  vote: built from the descriptors and the latest test results,
//	        signed, stored, pushed to every other authority
//	s+3P/8  fetch the votes still missing from their authors
//	s+4P/8  voting closes: pushed votes are refused from now on; fetch
//	        every vote still missing from every other authority (and
//	        again at s+9P/16)
//	s+5P/8  compute the consensus from the votes held, sign it, push the
//	        signature to every other authority
//	s+6P/8, s+7P/8  fetch missing signatures
//	va      publish, if more than half of all configured authorities signed
//	va+P/8  (next period) last signature fetch for a consensus that lacked
//	        a majority at va
//
// Every authority computes from the same votes: a vote is taken only before
// the deadline s+4P/8, and after it every live authority fetches from every
// other one each vote it lacks, so all of them end with every vote that any
// live authority held at the deadline. With one of three authorities down
// the other two have the same two votes; with two down there is no
// majority of votes and no consensus, and clients keep the previous one
// (valid for three periods). Each step's requests are bounded by the
// request timeout and by the step's end, so a dead authority delays
// nobody. The schedule assumes the authorities' clocks agree to within
// P/16.
//
// # Initial voting period
//
// While an authority holds no usable consensus (valid now, at least three
// Running relays, one of them a Running Exit: netdoc.Consensus.Usable) it
// runs its rounds on the initial schedule: the same steps, in eighths of
// initial_voting_period I instead of P, for valid-afters at multiples of
// I (Config.InitialVotingPeriod; default P, i.e. off). Consensuses made so
// still carry P: fresh-until va+P, valid-until va+3P. Once it holds a
// usable consensus it runs normal rounds; the first one it joins ends at
// most 2P later, inside that consensus's validity. Pushed votes and
// signatures are taken for the schedule the authority is on and refused
// (409, naming the schedule) otherwise.
//
// An authority without a usable consensus whose round failed (too few
// votes, or no majority of signatures at va) fetches the consensus every
// other authority serves, verifies it with the configured authority keys
// and serves the newest that is newer than its own: an authority restarted
// with an empty data directory while the others vote on the normal
// schedule rejoins them this way.
package directory
