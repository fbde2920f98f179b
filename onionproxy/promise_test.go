package onionproxy

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestNoLocalLookupsOrDirectDials reads this package's source: nothing
// may resolve a name or open a connection except dialLiteral, which takes
// IP literals (links to guards, HTTP to authorities).
func TestNoLocalLookupsOrDirectDials(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbiddenNet := map[string]bool{
		"Dial": true, "DialTimeout": true, "DialTCP": true, "DialUDP": true, "DialIP": true, "DialUnix": true,
		"LookupHost": true, "LookupIP": true, "LookupAddr": true, "LookupCNAME": true, "LookupMX": true,
		"LookupTXT": true, "LookupSRV": true, "LookupNS": true, "LookupPort": true, "LookupNetIP": true,
		"ResolveTCPAddr": true, "ResolveUDPAddr": true, "ResolveIPAddr": true, "DefaultResolver": true, "Resolver": true,
	}
	forbiddenHTTP := map[string]bool{"Get": true, "Post": true, "Head": true, "PostForm": true, "DefaultClient": true, "DefaultTransport": true}
	forbiddenMethods := map[string]bool{"DialContext": true, "LookupHost": true, "LookupIP": true, "LookupNetIP": true, "LookupAddr": true}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, d := range f.Decls {
			fn, _ := d.(*ast.FuncDecl)
			allowed := fn != nil && fn.Name.Name == "dialLiteral"
			ast.Inspect(d, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pos := fset.Position(sel.Pos())
				if id, ok := sel.X.(*ast.Ident); ok {
					switch {
					case id.Name == "net" && forbiddenNet[sel.Sel.Name]:
						t.Errorf("%s: net.%s: a local lookup or direct connection", pos, sel.Sel.Name)
					case id.Name == "net" && sel.Sel.Name == "Dialer" && !allowed:
						t.Errorf("%s: net.Dialer outside dialLiteral", pos)
					case id.Name == "http" && forbiddenHTTP[sel.Sel.Name]:
						t.Errorf("%s: http.%s: only the directory client fetches over HTTP", pos, sel.Sel.Name)
					}
				}
				if forbiddenMethods[sel.Sel.Name] && !allowed {
					t.Errorf("%s: .%s outside dialLiteral", pos, sel.Sel.Name)
				}
				return true
			})
		}
	}
	if checked < 5 {
		t.Fatalf("only %d source files checked", checked)
	}
}

// TestOnlyGuardsDialed watches every TCP connection the proxy opens while
// it serves SOCKS, HTTP CONNECT and DNS: each goes to a guard, at an IP
// literal; none to a destination.
func TestOnlyGuardsDialed(t *testing.T) {
	n := newTestNet(t, netOpts{})
	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	rp := startProxy(t, testConfig(t), WithConsensusSource(n.source()), WithRelayDialer(dial))
	rp.waitBootstrapped(t)
	port, _ := strconv.Atoi(n.port())
	for _, user := range []string{"a", "b", "c"} {
		body, err := fetchVia(rp.Addrs().SOCKS[0], socksReq{user: user, host: webName, port: uint16(port)}, "/page")
		if err != nil || !bytes.Equal(body, n.page) {
			t.Fatal(err)
		}
	}
	if got := connectRaw(t, rp.Addrs().HTTPConnect[0], "CONNECT 127.0.0.1:"+n.port()+" HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("CONNECT: %q", got)
	}
	guards := map[string]bool{}
	for _, g := range rp.Status().Guards {
		for _, r := range n.relays {
			if r.key.ID().String() == g.ID {
				guards[r.ln.Addr().String()] = true
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) == 0 {
		t.Fatal("no dials seen: the hook is not used")
	}
	for _, a := range dialed {
		if !guards[a] {
			t.Errorf("the proxy dialed %s, which is not one of its guards", a)
		}
	}
	t.Logf("%d link dials, all to guards", len(dialed))
}
