package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/httpapi"
)

// fragmentBomb is query { ...F0 } with F0..F(n-1) each spreading the
// next fragment twice: 2^n selections once resolved, in about 40n bytes.
func fragmentBomb(n int) string {
	var b strings.Builder
	b.WriteString("query { ...F0 }\n")
	for i := range n {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d }\n", i, i+1, i+1)
	}
	fmt.Fprintf(&b, "fragment F%d on Query { viewer { role } }\n", n)
	return b.String()
}

// firstError runs query over one transport and returns its first error.
type transportRun func(t *testing.T, query string) gqlError

// transports are the four ways an operation reaches the executor.
func transports(m *Main) map[string]transportRun {
	fromBody := func(t *testing.T, raw []byte) gqlError {
		t.Helper()
		var out struct{ Errors []gqlError }
		if err := json.Unmarshal(raw, &out); err != nil || len(out.Errors) == 0 {
			t.Fatalf("got %s; want errors", trim(raw))
		}
		return out.Errors[0]
	}
	overSocket := func(proto string) transportRun {
		return func(t *testing.T, query string) gqlError {
			t.Helper()
			ws, err := dialWS(t, m, proto, m.DemoToken, nil)
			if err != nil {
				t.Fatal(err)
			}
			ws.subscribe("1", query, nil)
			for {
				msg, err := ws.read(10 * time.Second)
				if err != nil {
					t.Fatalf("%s: %v; want the operation's errors", proto, err)
				}
				switch msg.Type {
				case "next", "data":
					return fromBody(t, msg.Payload)
				case "error":
					var errs []gqlError
					if json.Unmarshal(msg.Payload, &errs) != nil {
						var one gqlError
						_ = json.Unmarshal(msg.Payload, &one)
						errs = []gqlError{one}
					}
					return errs[0]
				case "complete":
					t.Fatalf("%s: completed without an answer", proto)
				}
			}
		}
	}
	return map[string]transportRun{
		"POST": func(t *testing.T, query string) gqlError {
			t.Helper()
			body, _ := json.Marshal(map[string]any{"query": query})
			resp, raw := post(t, m.URL, m.DemoToken, body)
			expect(t, "status", resp.StatusCode, http.StatusOK)
			return fromBody(t, raw)
		},
		"GET": func(t *testing.T, query string) gqlError {
			t.Helper()
			req, _ := http.NewRequest("GET", m.URL+"/graphql?query="+url.QueryEscape(query), nil)
			req.Header.Set("Authorization", "Bearer "+m.DemoToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			expect(t, "status", resp.StatusCode, http.StatusOK)
			return fromBody(t, raw)
		},
		"graphql-transport-ws": overSocket("graphql-transport-ws"),
		"graphql-ws":           overSocket("graphql-ws"),
	}
}

// TestDocumentLimitsOnEveryTransport: the documents that made the
// complexity and depth walks exponential, and validation quadratic, are
// refused with LIMIT_EXCEEDED naming the limit, over POST, GET and both
// websocket subprotocols; each refusal is counted in /metrics; ordinary
// documents with fragments still run. (The work each refusal takes is
// counted by httpapi's TestDocumentLimitsBoundWork.)
func TestDocumentLimitsOnEveryTransport(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	bombs := []struct {
		name, query, limit string
	}{
		{"fragments spreading the next twice, n=20", fragmentBomb(20), httpapi.LimitFields},
		{"one field 600 times", "{ " + strings.Repeat("__typename ", 600) + "}", httpapi.LimitSelectionFields},
		{"one field 150 times", "{ " + strings.Repeat("__typename ", 150) + "}", httpapi.LimitMerges},
		{"viewers that merge into 1,000 fields", "{ " + strings.Repeat("viewer { "+strings.Repeat("__typename ", 100)+"} ", 10) + "}", httpapi.LimitSelectionFields},
	}
	refusals := 0
	for name, run := range transports(m) {
		for _, b := range bombs {
			t.Run(name+" "+b.name, func(t *testing.T) {
				e := run(t, b.query)
				if e.Code() != httpapi.CodeLimitExceeded || e.Extensions["limit"] != b.limit || e.Message == "" {
					t.Errorf("got %s %v %q; want LIMIT_EXCEEDED for %s", e.Code(), e.Extensions["limit"], e.Message, b.limit)
				}
			})
			refusals++
		}
	}
	metrics := httpGet(t, m.URL+"/metrics")
	total := 0
	for _, limit := range []string{httpapi.LimitFields, httpapi.LimitSelectionFields, httpapi.LimitMerges} {
		var n int
		re := regexp.MustCompile(`switchboard_graphql_limit_refusals_total\{limit="` + limit + `"\} (\d+)`)
		if mm := re.FindStringSubmatch(metrics); mm != nil {
			fmt.Sscan(mm[1], &n)
		}
		total += n
	}
	expect(t, "refusals counted in /metrics", total, refusals)

	data := c.must(`{ integrations { ...Card } viewer { ...V ...V } } fragment Card on Integration { id status badge { label } } fragment V on Viewer { role }`, nil)
	if get(data, "viewer.role") == nil {
		t.Errorf("an ordinary document with fragments: %v", data)
	}
}

// syncBuffer is a log destination the server's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProductionModeRevealsNothing: with -dev=false no error suggests a
// name (fields, arguments, enum values, input fields, types), and
// introspection is refused with INTROSPECTION_DISABLED — a refusal, not
// an internal error, and no ERROR line in the log — on every transport.
func TestProductionModeRevealsNothing(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SWITCHBOARD_SECRET_KEY", "k1:"+strings.Repeat("A", 43)+"=")
	var out, errb bytes.Buffer
	if code := runCLI([]string{"token", "create", "--workspace", "ws_p", "--plan", "pure", "--role", "admin", "--data", dir, "--dev=false"}, &out, &errb); code != 0 {
		t.Fatalf("cli: %s", errb.String())
	}
	var logs syncBuffer
	m := mustStart(t, dir, func(m *Main) {
		m.Config.Dev = false
		m.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	m.DemoToken = strings.TrimSpace(out.String())
	c := newClient(t, m, m.DemoToken)

	for _, q := range []struct {
		name, query string
		vars        map[string]any
	}{
		{"field", `{ integrationz { id } }`, nil},
		{"argument", `{ integrations(categry: CRM) { id } }`, nil},
		{"enum value", `{ integrations(category: CRN) { id } }`, nil},
		{"enum value in a variable", `query($c: IntegrationCategory) { integrations(category: $c) { id } }`, map[string]any{"c": "CRN"}},
		{"input field", `mutation { configureIntegration(input: {id: "x", settings: [], expectedRevison: "1"}) { id } }`, nil},
		{"type", `{ integrations { ...F } } fragment F on Integratio { id }`, nil},
		{"subfields", `{ integrations { provider } }`, nil},
	} {
		_, _, errs := c.do(q.query, q.vars)
		if len(errs) == 0 {
			t.Errorf("%s: no error", q.name)
		}
		for _, e := range errs {
			if strings.Contains(e.Message, "Did you mean") || strings.Contains(e.Message, "CRM") {
				t.Errorf("%s: %q suggests a name", q.name, e.Message)
			}
		}
	}

	for name, run := range transports(m) {
		for _, q := range []string{`{ __schema { types { name } } }`, `{ __type(name: "Integration") { fields { name } } }`} {
			e := run(t, q)
			if e.Code() != httpapi.CodeIntrospectionDisabled || strings.Contains(e.Message, "Integration") {
				t.Errorf("%s %s: got %s %q; want INTROSPECTION_DISABLED", name, q, e.Code(), e.Message)
			}
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("refusals logged as errors:\n%s", logs.String())
	}
	if data := c.must(`{ __typename viewer { role } }`, nil); data["__typename"] != "Query" {
		t.Errorf("__typename: %v", data)
	}
}

// TestPlaygroundHeaders: /playground cannot be framed, is not sniffed,
// runs only its own inline script (by nonce), and GraphiQL does not keep
// the request headers — the API token — in localStorage.
func TestPlaygroundHeaders(t *testing.T) {
	m := mustStart(t, "")
	resp, err := http.Get(m.URL + "/playground")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	expect(t, "status", resp.StatusCode, http.StatusOK)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "default-src 'none'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	expect(t, "X-Content-Type-Options", resp.Header.Get("X-Content-Type-Options"), "nosniff")
	nonce := regexp.MustCompile(`'nonce-([^']+)'`).FindStringSubmatch(csp)
	if nonce == nil || !bytes.Contains(body, []byte(`<script nonce="`+nonce[1]+`">`)) {
		t.Errorf("the inline script does not carry the policy's nonce (%q)", csp)
	}
	if !bytes.Contains(body, []byte("shouldPersistHeaders: false")) || bytes.Contains(body, []byte("shouldPersistHeaders: true")) {
		t.Error("GraphiQL persists headers")
	}
	// A nonce is good for one response.
	resp2, err := http.Get(m.URL + "/playground")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.Header.Get("Content-Security-Policy") == csp {
		t.Error("the same nonce twice")
	}
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
