//go:build ignore

// cgo_convert turns the published CGO test-vector tables (Rust in arti's
// crates/tor-proto/testdata/cgo_*.rs, C in tor's src/test/cgo_vectors.inc)
// into the JSON files that cgo_vectors_test.go reads. Both sources list the
// same fields in the same order, generated from the same Python reference
// implementation; this program only tokenizes them, so it needs neither a
// Rust nor a C parser.
//
// Usage (from layercrypt/):
//
//	go run testdata/cgo_convert.go -in FILE -repo OWNER/NAME -path PATH \
//	    -commit HASH -out testdata/cgo_....json
//
// FILE is the source file as stored in the repository at that commit.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
)

type token struct {
	kind byte   // '"' string, 'b' bool, 'n' number, or a bracket '(' ')' '[' ']' '{' '}'
	text string // for strings, bools and numbers
}

// tableNames maps each source table name to our table name.
var tableNames = map[string]string{
	"ET_TEST_VECTORS":                   "et",
	"ET_TESTVECS":                       "et",
	"PRF_TEST_VECTORS":                  "prf",
	"PRF_TESTVECS":                      "prf",
	"UIV_TEST_VECTORS":                  "uiv",
	"UIV_TESTVECS":                      "uiv",
	"UIV_UPDATE_TEST_VECTORS":           "uiv_update",
	"UIV_UPDATE_TESTVECS":               "uiv_update",
	"CGO_RELAY_TEST_VECTORS":            "relay",
	"CGO_RELAY_TESTVECS":                "relay",
	"CGO_RELAY_ORIGINATE_TEST_VECTORS":  "relay_originate",
	"CGO_RELAY_ORIGINATE_TESTVECS":      "relay_originate",
	"CGO_CLIENT_ORIGINATE_TEST_VECTORS": "client_originate",
	"CGO_CLIENT_ORIGINATE_TESTVECS":     "client_originate",
}

// fields lists, per table, the names of the leaf values of one record in
// source order. A name used several times becomes a JSON array.
var fields = map[string][]string{
	"et":         {"encrypt", "keys", "tweak", "input", "output"},
	"prf":        {"keys", "t", "tweak", "output"},
	"uiv":        {"encrypt", "keys", "tweak", "left", "right", "out_left", "out_right"},
	"uiv_update": {"keys", "nonce", "out_keys", "out_nonce"},
	"relay": {"inbound", "keys", "nonce", "tprime", "ad", "tag", "msg",
		"out_keys", "out_nonce", "out_tprime", "out_tag", "out_msg"},
	"relay_originate": {"keys", "nonce", "tprime", "ad", "msg",
		"out_keys", "out_nonce", "out_tprime", "out_tag", "out_msg"},
	"client_originate": {
		"keys", "nonce", "tprime", "keys", "nonce", "tprime", "keys", "nonce", "tprime",
		"hop", "ad", "msg",
		"out_keys", "out_nonce", "out_tprime", "out_keys", "out_nonce", "out_tprime",
		"out_keys", "out_nonce", "out_tprime",
		"out_tag", "out_msg"},
}

func main() {
	in := flag.String("in", "", "source file")
	repo := flag.String("repo", "", "source repository, owner/name on GitHub")
	path := flag.String("path", "", "path of the source file in the repository")
	commit := flag.String("commit", "", "commit the source file was taken from")
	out := flag.String("out", "", "output JSON file")
	flag.Parse()
	if *in == "" || *repo == "" || *path == "" || *commit == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	src, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	tables, err := convert(string(src))
	if err != nil {
		log.Fatalf("%s: %v", *in, err)
	}
	doc := map[string]any{
		"source": map[string]string{
			"repository": "https://github.com/" + *repo,
			"path":       *path,
			"commit":     *commit,
		},
		"note":   "CGO test vectors (Tor proposal 359) converted from the source above by layercrypt/testdata/cgo_convert.go; do not edit by hand.",
		"tables": tables,
	}
	b, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	for name, recs := range tables {
		fmt.Printf("%s: %s: %d vectors\n", *out, name, len(recs))
	}
}

// convert finds every known table in src and returns its records.
func convert(src string) (map[string][]map[string]any, error) {
	tables := map[string][]map[string]any{}
	for srcName, name := range tableNames {
		at := indexWord(src, srcName)
		if at < 0 {
			continue
		}
		// The table body starts at the first '[' of "&[" (Rust) or
		// '{' after "[] =" (C) following the name.
		rest := src[at+len(srcName):]
		eq := strings.Index(rest, "=")
		if eq < 0 {
			return nil, fmt.Errorf("%s: no '='", srcName)
		}
		body := rest[eq+1:]
		recs, err := records(body, fields[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", srcName, err)
		}
		tables[name] = append(tables[name], recs...)
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("no known table found")
	}
	return tables, nil
}

// indexWord finds name as a whole identifier.
func indexWord(s, name string) int {
	for off := 0; ; {
		i := strings.Index(s[off:], name)
		if i < 0 {
			return -1
		}
		i += off
		end := i + len(name)
		before := i == 0 || !isIdent(s[i-1])
		after := end == len(s) || !isIdent(s[end])
		if before && after {
			return i
		}
		off = end
	}
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// records reads one table: an opening bracket, then records (each a
// bracketed group; the comment line just before it names it), then the
// matching closing bracket.
func records(body string, names []string) ([]map[string]any, error) {
	var (
		out     []map[string]any
		depth   int
		comment string // last comment seen at record level
		name    string // name of the record being read
		leaves  []token
	)
	i := 0
	for i < len(body) {
		c := body[i]
		switch {
		case c == '/' && i+1 < len(body) && body[i+1] == '/':
			end := strings.IndexByte(body[i:], '\n')
			if end < 0 {
				end = len(body) - i
			}
			if depth == 1 {
				comment = strings.TrimSpace(body[i+2 : i+end])
			}
			i += end
		case c == '"':
			end := strings.IndexByte(body[i+1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated string")
			}
			if depth < 2 {
				return nil, fmt.Errorf("string outside a record")
			}
			leaves = append(leaves, token{'"', body[i+1 : i+1+end]})
			i += end + 2
		case c == '(' || c == '[' || c == '{':
			depth++
			if depth == 2 {
				name, leaves = comment, nil
			}
			i++
		case c == ')' || c == ']' || c == '}':
			depth--
			i++
			if depth == 1 {
				rec, err := record(name, leaves, names)
				if err != nil {
					return nil, err
				}
				out = append(out, rec)
			}
			if depth == 0 {
				return out, nil
			}
		case isIdent(c):
			j := i
			for j < len(body) && isIdent(body[j]) {
				j++
			}
			word := body[i:j]
			i = j
			if depth < 2 {
				continue // e.g. a type name before the table
			}
			switch word {
			case "True", "true":
				leaves = append(leaves, token{'b', "true"})
			case "False", "false":
				leaves = append(leaves, token{'b', "false"})
			default:
				if _, err := strconv.Atoi(word); err != nil {
					return nil, fmt.Errorf("record %q: unexpected word %q", name, word)
				}
				leaves = append(leaves, token{'n', word})
			}
		default:
			i++
		}
	}
	return nil, fmt.Errorf("table not closed")
}

func record(name string, leaves []token, names []string) (map[string]any, error) {
	if len(leaves) != len(names) {
		return nil, fmt.Errorf("record %q: %d values, want %d", name, len(leaves), len(names))
	}
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	rec := map[string]any{"name": name}
	for k, tok := range leaves {
		var v any
		switch tok.kind {
		case '"':
			v = strings.ToLower(tok.text)
		case 'b':
			v = tok.text == "true"
		case 'n':
			n, _ := strconv.Atoi(tok.text)
			v = n
		}
		f := names[k]
		if count[f] > 1 {
			arr, _ := rec[f].([]any)
			rec[f] = append(arr, v)
		} else {
			rec[f] = v
		}
	}
	return rec, nil
}
