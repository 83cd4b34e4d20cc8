package eventrender

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/bont/switchboard/graph"
	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/resolvers"
	"github.com/bont/switchboard/switchboard"
)

// The renderer is checked against gqlgen's executor: the same operation
// and the same event go through both, and whenever the renderer renders,
// its bytes must be the ones json.Marshal gives for the executor's
// response. Operations are generated from the schema (aliases, repeated
// and merged fields, inline and named fragments, @skip and @include with
// literals and variables, __typename); events are generated with the
// strings JSON and HTML escaping care about, nil and empty lists, zones
// and nanoseconds, unknown providers, and viewers of every role.

// diffRoot is the real resolvers, with a subscription that serves the
// events the test sends.
type diffRoot struct {
	*resolvers.Resolver
	events chan *switchboard.Event
}

func (d *diffRoot) Subscription() graph.SubscriptionResolver { return diffSubscription{d.events} }

type diffSubscription struct{ events chan *switchboard.Event }

func (s diffSubscription) IntegrationEvents(context.Context, *uint64, *switchboard.Category) (<-chan *switchboard.Event, error) {
	return s.events, nil
}

type differ struct {
	t      testing.TB
	root   *diffRoot
	exec   *executor.Executor
	schema *ast.Schema
}

func newDiffer(t testing.TB) *differ {
	t.Helper()
	providers := oauthflow.BuiltinProviders()
	odd := providers[0]
	odd.ID = "odd"
	odd.Name = `Odd <"Provider"> & Co` + "\u2028"
	odd.SettingDefinitions = []switchboard.SettingDefinition{
		{Key: "mode", Label: "Mode <&>", Type: switchboard.SettingEnum, Options: []string{"a\"b", "c\\d", "\u2029"}, Default: "a\"b"},
		{Key: "note", Label: "Note", Type: switchboard.SettingString, Default: "\x01\x7f"},
	}
	providers = append(providers, odd)
	for i := range providers {
		providers[i].ClientID, providers[i].ClientSecret = "client", "secret"
	}
	reg, err := oauthflow.NewRegistry(oauthflow.Config{RedirectURL: "http://127.0.0.1:1/oauth/callback", Providers: providers})
	if err != nil {
		t.Fatal(err)
	}
	root := &diffRoot{Resolver: &resolvers.Resolver{Service: &switchboard.Service{Catalogue: reg}}, events: make(chan *switchboard.Event, 1)}
	es := graph.NewExecutableSchema(graph.Config{Resolvers: root})
	return &differ{t: t, root: root, exec: executor.New(es), schema: es.Schema()}
}

// operation is one prepared subscription: gqlgen's response handler and
// the renderer compiled for it.
type operation struct {
	query     string
	vars      map[string]any
	ctx       context.Context
	responses graphql.ResponseHandler
	fast      func([]byte, any) ([]byte, bool)
}

// prepare validates and dispatches query as gqlgen's websocket transport
// does; ok false when it does not validate.
func (d *differ) prepare(p *switchboard.Principal, query string, vars map[string]any) (*operation, bool) {
	ctx := graphql.StartOperationTrace(switchboard.NewContextWithPrincipal(context.Background(), p))
	rc, errs := d.exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query, Variables: vars})
	if errs != nil {
		return nil, false
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	responses, ctx := d.exec.DispatchOperation(ctx, rc)
	op := &operation{query: query, vars: vars, ctx: ctx, responses: responses}
	if r := Compile(ctx, d.root.Service, rc); r != nil {
		op.fast = r
	}
	return op, true
}

// both renders ev through the executor and the renderer: what gqlgen
// sends, and the renderer's bytes and ok.
func (d *differ) both(op *operation, ev *switchboard.Event) (want, got []byte, ok bool) {
	d.t.Helper()
	d.root.events <- ev
	resp := op.responses(op.ctx)
	if resp == nil {
		d.t.Fatalf("no response for %s", op.query)
	}
	want, err := json.Marshal(resp)
	if err != nil {
		want = nil // the transport drops such an item; the renderer must decline it
	}
	if op.fast != nil {
		got, ok = op.fast([]byte("prefix"), ev)
		if ok {
			if !strings.HasPrefix(string(got), "prefix") {
				d.t.Fatalf("the renderer did not append to dst: %.40s", got)
			}
			got = got[len("prefix"):]
		}
	}
	return want, got, ok
}

func TestEventRendererMatchesExecutor(t *testing.T) {
	d := newDiffer(t)
	rng := rand.New(rand.NewPCG(1, 2))
	viewers := testViewers()
	ops, valid, fastOps := 0, 0, 0
	events, rendered := 0, 0
	for range 400 {
		q, vars := genOperation(rng, d.schema)
		ops++
		p := viewers[rng.IntN(len(viewers))]
		op, ok := d.prepare(p, q, vars)
		if !ok {
			continue
		}
		valid++
		if op.fast == nil {
			t.Errorf("no renderer for a valid operation without @defer:\n%s", q)
			continue
		}
		fastOps++
		for range 25 {
			ev, clean := genEvent(rng, p)
			want, got, ok := d.both(op, ev)
			events++
			if !ok {
				if clean {
					t.Fatalf("the renderer declined a clean event\nquery: %s\nvars: %v\nevent: %+v\nintegration: %+v", q, vars, ev, ev.Integration)
				}
				continue
			}
			rendered++
			if want == nil {
				t.Fatalf("the renderer rendered an event gqlgen fails to marshal\nquery: %s\ngot: %s", q, got)
			}
			if string(got) != string(want) {
				t.Fatalf("renderer and executor differ\nquery: %s\nvars: %v\nwant: %s\ngot:  %s", q, vars, want, got)
			}
		}
	}
	t.Logf("%d operations generated, %d valid, %d with a renderer; %d events, %d rendered", ops, valid, fastOps, events, rendered)
	if valid < ops/2 {
		t.Fatalf("only %d of %d generated operations validate: the generator is off", valid, ops)
	}
	if rendered < events/2 {
		t.Fatalf("only %d of %d events rendered", rendered, events)
	}
}

// Every field of every type the renderer plans must be known to it, so a
// field added to the schema fails here rather than silently sending the
// events of operations that select it through gqlgen (which stays correct,
// only slower).
func TestEventRendererKnowsEveryField(t *testing.T) {
	d := newDiffer(t)
	seen := map[string]bool{}
	var walk func(t *objectType)
	walk = func(ot *objectType) {
		if seen[ot.name] {
			return
		}
		seen[ot.name] = true
		def := d.schema.Types[ot.name]
		if def == nil {
			t.Fatalf("no type %s in the schema", ot.name)
		}
		var schemaFields, planFields []string
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			schemaFields = append(schemaFields, f.Name)
			if d.schema.Types[f.Type.Name()].Kind == ast.Object && ot.children[f.Name] == nil {
				t.Errorf("%s.%s: an object field without a child type in the plan", ot.name, f.Name)
			}
		}
		for name := range ot.fields {
			planFields = append(planFields, name)
		}
		sort.Strings(schemaFields)
		sort.Strings(planFields)
		if !slices.Equal(schemaFields, planFields) {
			t.Errorf("%s: the schema has fields %v, the renderer knows %v", ot.name, schemaFields, planFields)
		}
		for _, c := range ot.children {
			walk(c)
		}
	}
	walk(eventType)

	// And an operation selecting all of them renders.
	q := "subscription { integrationEvents " + selectAll(d.schema, d.schema.Types["IntegrationEvent"]) + " }"
	p := testViewers()[0]
	op, ok := d.prepare(p, q, nil)
	if !ok || op.fast == nil {
		t.Fatalf("no renderer for %s", q)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		ev, clean := genEvent(rng, p)
		want, got, ok := d.both(op, ev)
		if !ok {
			if clean {
				t.Fatalf("declined a clean event: %+v", ev.Integration)
			}
			continue
		}
		if string(got) != string(want) {
			t.Fatalf("differ\nwant: %s\ngot:  %s", want, got)
		}
	}
}

// What the renderer does not render it leaves to gqlgen: deferred
// fragments get no renderer, and an event with a null where the schema
// says non-null, or an enum value that is not a plain name, is declined.
func TestEventRendererDeclines(t *testing.T) {
	d := newDiffer(t)
	p := testViewers()[0]
	op, ok := d.prepare(p, `subscription { integrationEvents { revision ... @defer { at } } }`, nil)
	if ok && op.fast != nil {
		t.Errorf("a renderer for an operation with @defer")
	}
	op, ok = d.prepare(p, `subscription { integrationEvents { revision at previousStatus integration { id status accountHistory { from } } } }`, nil)
	if !ok || op.fast == nil {
		t.Fatal("no renderer")
	}
	bad := "not a name"
	st := switchboard.Status(bad)
	for name, ev := range map[string]*switchboard.Event{
		"zero at":          {Revision: 1, Integration: &switchboard.Integration{ID: "x", Status: switchboard.StatusConnected}},
		"nil integration":  {Revision: 1, At: time.Unix(1, 0)},
		"enum not a name":  {Revision: 1, At: time.Unix(1, 0), PreviousStatus: &st, Integration: &switchboard.Integration{ID: "x", Status: switchboard.StatusConnected}},
		"zero period from": {Revision: 1, At: time.Unix(1, 0), Integration: &switchboard.Integration{ID: "x", Status: switchboard.StatusConnected, AccountHistory: []switchboard.AccountPeriod{{}}}},
	} {
		if _, _, ok := d.both(op, ev); ok {
			t.Errorf("%s: rendered", name)
		}
	}
	if b, ok := op.fast(nil, "not an event"); ok || len(b) != 0 {
		t.Errorf("rendered an item of another type")
	}
}

// panicky is a catalogue whose provider "boom" panics.
type panicky struct{ switchboard.Catalogue }

func (p panicky) Provider(id string) (*switchboard.Provider, bool) {
	if id == "boom" {
		panic("catalogue failure")
	}
	return p.Catalogue.Provider(id)
}

// A panic in the domain under the renderer hands the event to gqlgen,
// which recovers as it does for a resolver; the renderer's buffer is left
// as given.
func TestEventRendererLeavesPanicsToExecutor(t *testing.T) {
	d := newDiffer(t)
	d.root.Service.Catalogue = panicky{d.root.Service.Catalogue}
	op, ok := d.prepare(testViewers()[0], `subscription { integrationEvents { revision integration { id provider { name } } } }`, nil)
	if !ok || op.fast == nil {
		t.Fatal("no renderer")
	}
	ev := &switchboard.Event{Revision: 7, At: time.Unix(1, 0), Integration: &switchboard.Integration{ID: "x", ProviderID: "boom", Status: switchboard.StatusConnected}}
	b, ok := op.fast([]byte("kept"), ev)
	if ok || string(b) != "kept" {
		t.Fatalf("rendered %q, %v", b, ok)
	}
	ev.Integration.ProviderID = "hubspot"
	if want, got, ok := d.both(op, ev); !ok || string(got) != string(want) {
		t.Fatalf("after the panic: %s, want %s", got, want)
	}
}

func testViewers() []*switchboard.Principal {
	return []*switchboard.Principal{
		{WorkspaceID: "ws_1", UserID: "usr_admin", Role: switchboard.RoleAdmin},
		{WorkspaceID: "ws_1", UserID: "usr_member", Role: switchboard.RoleMember},
		{WorkspaceID: "ws_1", UserID: "usr_admin", Role: switchboard.RoleAdmin, Scopes: []string{switchboard.ScopeIntegrationsRead}},
		{WorkspaceID: "ws_1", UserID: "usr_support", Role: switchboard.RoleSupport},
	}
}

// ---- generated operations ----

type opGen struct {
	rng    *rand.Rand
	schema *ast.Schema
	vars   map[string]string // name → type, of the variables used
	frags  []string
	seq    int
}

// genOperation returns an integrationEvents subscription over a random
// selection, and values for its variables.
func genOperation(rng *rand.Rand, schema *ast.Schema) (string, map[string]any) {
	g := &opGen{rng: rng, schema: schema, vars: map[string]string{}}
	root := "integrationEvents"
	if rng.IntN(4) == 0 {
		root = "events: integrationEvents"
	}
	args := ""
	if rng.IntN(3) == 0 {
		g.vars["after"] = "Revision"
		args = "(afterRevision: $after)"
	}
	body := g.selection(schema.Types["IntegrationEvent"], 3)
	var decl []string
	values := map[string]any{}
	names := make([]string, 0, len(g.vars))
	for name := range g.vars {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		decl = append(decl, "$"+name+": "+g.vars[name])
		switch g.vars[name] {
		case "Boolean!":
			values[name] = rng.IntN(2) == 0
		case "Revision":
			values[name] = "5"
		}
	}
	q := "subscription"
	if rng.IntN(3) == 0 {
		q += " Named"
	}
	if len(decl) > 0 {
		q += "(" + strings.Join(decl, ", ") + ")"
	}
	q += " { " + root + args + " " + body + " }"
	for _, f := range g.frags {
		q += "\n" + f
	}
	return q, values
}

func (g *opGen) boolVar() string {
	g.seq++
	name := fmt.Sprintf("b%d", g.seq)
	g.vars[name] = "Boolean!"
	return "$" + name
}

func (g *opGen) directive() string {
	switch g.rng.IntN(10) {
	case 0:
		return " @skip(if: " + g.boolVar() + ")"
	case 1:
		return " @include(if: " + g.boolVar() + ")"
	case 2:
		return " @skip(if: false)"
	case 3:
		return " @include(if: true)"
	case 4:
		return " @include(if: false)"
	}
	return ""
}

// selection is a selection set on def, depth levels of objects deep.
func (g *opGen) selection(def *ast.Definition, depth int) string {
	var parts []string
	var fields []*ast.FieldDefinition
	for _, f := range def.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		if g.schema.Types[f.Type.Name()].Kind == ast.Object && depth == 0 {
			continue
		}
		fields = append(fields, f)
	}
	n := 1 + g.rng.IntN(min(len(fields), 6))
	for _, i := range g.rng.Perm(len(fields))[:n] {
		f := fields[i]
		parts = append(parts, g.field(f, depth))
		if g.rng.IntN(6) == 0 {
			// The same field again: merged with the first.
			parts = append(parts, g.field(f, depth))
		}
	}
	if g.rng.IntN(5) == 0 {
		parts = append(parts, "__typename")
	}
	if g.rng.IntN(5) == 0 {
		parts = append(parts, "kindAlias: __typename")
	}
	// Some of the fields inside fragments.
	if len(parts) > 1 && g.rng.IntN(3) == 0 {
		k := 1 + g.rng.IntN(len(parts)-1)
		inner := strings.Join(parts[k:], " ")
		parts = parts[:k]
		switch g.rng.IntN(3) {
		case 0:
			parts = append(parts, "... on "+def.Name+g.directive()+" { "+inner+" }")
		case 1:
			parts = append(parts, "..."+g.directive()+" { "+inner+" }")
		default:
			g.seq++
			name := fmt.Sprintf("F%d", g.seq)
			g.frags = append(g.frags, "fragment "+name+" on "+def.Name+" { "+inner+" }")
			parts = append(parts, "..."+name+g.directive())
		}
	}
	g.rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	return "{ " + strings.Join(parts, " ") + " }"
}

func (g *opGen) field(f *ast.FieldDefinition, depth int) string {
	s := f.Name
	if g.rng.IntN(4) == 0 {
		// An alias named after the field: repeats merge, and it cannot
		// clash with another field's name.
		s = "a_" + f.Name + ": " + f.Name
	}
	s += g.directive()
	if t := g.schema.Types[f.Type.Name()]; t.Kind == ast.Object {
		s += " " + g.selection(t, depth-1)
	}
	return s
}

func selectAll(schema *ast.Schema, def *ast.Definition) string {
	var parts []string
	for _, f := range def.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		s := f.Name
		if t := schema.Types[f.Type.Name()]; t.Kind == ast.Object {
			s += " " + selectAll(schema, t)
		}
		parts = append(parts, s)
	}
	return "{ __typename " + strings.Join(parts, " ") + " }"
}

// ---- generated events ----

var stringPieces = []string{
	"", "plain", "Zoë", "漢字", "🙂", "<b>bold</b>", "a & b", "x > y",
	`say "hi"`, `back\slash`, "tab\tnew\nline\rret", "\x00\x01\x1f", "\x7f",
	"\u2028line\u2029para", "em—dash", "\xff\xfeinvalid", "\xe2\x80", "/slash/",
}

func genString(rng *rand.Rand) string {
	var b strings.Builder
	for range rng.IntN(4) {
		b.WriteString(stringPieces[rng.IntN(len(stringPieces))])
	}
	return b.String()
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 2*3600), time.FixedZone("X", -(5*3600 + 30*60))}

func genTime(rng *rand.Rand) time.Time {
	t := time.Unix(rng.Int64N(4e9), 0)
	if rng.IntN(2) == 0 {
		t = t.Add(time.Duration(rng.IntN(1e9)))
	}
	return t.In(zones[rng.IntN(len(zones))])
}

func genTimePtr(rng *rand.Rand) *time.Time {
	switch rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return &time.Time{}
	}
	t := genTime(rng)
	return &t
}

func genStrings(rng *rand.Rand) []string {
	switch rng.IntN(3) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	var ss []string
	for range 1 + rng.IntN(3) {
		ss = append(ss, genString(rng))
	}
	return ss
}

var (
	statuses   = []switchboard.Status{switchboard.StatusConnected, switchboard.StatusReconnectRequired, switchboard.StatusError, switchboard.StatusDisconnected}
	categories = []switchboard.Category{switchboard.CategoryCRM, switchboard.CategoryEmailCalendar, switchboard.CategoryMessaging, switchboard.CategoryOther}
	kinds      = []switchboard.EventKind{switchboard.EventConnected, switchboard.EventConfigured, switchboard.EventDisconnected, "CUSTOM <kind>", ""}
)

// genEvent returns an event and whether it is clean: one the renderer
// must render (no null where the schema says non-null, enums valid).
func genEvent(rng *rand.Rand, viewer *switchboard.Principal) (*switchboard.Event, bool) {
	clean := true
	ev := &switchboard.Event{
		Revision: rng.Uint64() >> rng.IntN(64),
		At:       genTime(rng),
		Kind:     kinds[rng.IntN(len(kinds))],
	}
	if rng.IntN(50) == 0 {
		ev.At, clean = time.Time{}, false
	}
	if rng.IntN(2) == 0 {
		s := statuses[rng.IntN(len(statuses))]
		ev.PreviousStatus = &s
	}
	if rng.IntN(50) == 0 {
		return ev, false
	}
	providers := []string{"hubspot", "salesforce", "google", "odd", "gone"}
	in := &switchboard.Integration{
		ID:            "int_" + genString(rng),
		ProviderID:    providers[rng.IntN(len(providers))],
		Category:      categories[rng.IntN(len(categories))],
		Status:        statuses[rng.IntN(len(statuses))],
		StatusReason:  genString(rng),
		StatusMessage: genString(rng),
		GrantedScopes: genStrings(rng),
		MissingScopes: genStrings(rng),
		ConnectedAt:   genTimePtr(rng),
		LastSyncedAt:  genTimePtr(rng),
		Revision:      rng.Uint64(),
	}
	switch rng.IntN(3) {
	case 0:
		in.OwnerUserID = viewer.UserID
	case 1:
		in.OwnerUserID = "usr_other"
	}
	if rng.IntN(2) == 0 {
		in.Account = &switchboard.Account{ID: genString(rng), Name: genString(rng), Email: genString(rng)}
	}
	for range rng.IntN(3) {
		ap := switchboard.AccountPeriod{Account: switchboard.Account{ID: genString(rng), Name: genString(rng)}, From: genTime(rng), Until: genTimePtr(rng)}
		if rng.IntN(40) == 0 {
			ap.From, clean = time.Time{}, false
		}
		in.AccountHistory = append(in.AccountHistory, ap)
	}
	if rng.IntN(2) == 0 {
		in.SettingValues = map[string]string{"mode": genString(rng), "note": genString(rng), "unknown": "x"}
	}
	ev.Integration = in
	return ev, clean
}

// One event rendered by gqlgen's executor and json.Marshal, as the
// transport did before, and by the compiled renderer, for two selections:
// the load command's card (revision, status and badge) and a settings
// page's card with the resolver-backed provider and actions. Compare the
// two in one run:
//
//	go test -run '^$' -bench EventRender -benchmem ./eventrender
func BenchmarkEventRender(b *testing.B) {
	selections := []struct{ name, query string }{
		{"card", `subscription($after: Revision) { integrationEvents(afterRevision: $after) {
			revision at kind integration { id status badge { label tone } } } }`},
		{"settings-page", `subscription($after: Revision) { integrationEvents(afterRevision: $after) {
			revision at kind previousStatus
			integration { id status statusMessage badge { label tone } actions account { id name email } connectedAt revision provider { id name } } } }`},
	}
	d := newDiffer(b)
	p := testViewers()[0]
	now := time.Now()
	prev := switchboard.StatusConnected
	ev := &switchboard.Event{Revision: 123456, At: now, Kind: switchboard.EventConfigured, PreviousStatus: &prev,
		Integration: &switchboard.Integration{ID: "int_0123456789", ProviderID: "hubspot", Category: switchboard.CategoryCRM,
			Status: switchboard.StatusConnected, Account: &switchboard.Account{ID: "acct_1", Name: "Acme", Email: "ops@acme.test"},
			ConnectedAt: &now, Revision: 123456}}
	for _, sel := range selections {
		op, ok := d.prepare(p, sel.query, map[string]any{"after": "5"})
		if !ok || op.fast == nil {
			b.Fatal("no renderer")
		}
		b.Run(sel.name+"/executor", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.root.events <- ev
				if _, err := json.Marshal(op.responses(op.ctx)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sel.name+"/compiled", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := op.fast(nil, ev); !ok {
					b.Fatal("declined")
				}
			}
		})
	}
}

// Arbitrary strings and times in the fields an event carries: whatever
// the renderer renders equals gqlgen's output.
//
//	go test -run '^$' -fuzz FuzzEventRender -fuzztime 30s ./eventrender
func FuzzEventRender(f *testing.F) {
	for _, s := range stringPieces {
		f.Add(s, "<&>"+s, int64(1700000000), int64(123456789), 3600)
	}
	d := newDiffer(f)
	p := testViewers()[0]
	op, ok := d.prepare(p, "subscription { integrationEvents "+selectAll(d.schema, d.schema.Types["IntegrationEvent"])+" }", nil)
	if !ok || op.fast == nil {
		f.Fatal("no renderer")
	}
	f.Fuzz(func(t *testing.T, a, b string, sec, nsec int64, offset int) {
		d.t = t
		at := time.Unix(sec, nsec).In(time.FixedZone(b, offset%(18*3600)))
		ev := &switchboard.Event{Revision: uint64(sec), At: at, Kind: switchboard.EventKind(a),
			Integration: &switchboard.Integration{ID: a, ProviderID: b, Category: switchboard.CategoryCRM,
				Status: switchboard.StatusError, StatusReason: a, StatusMessage: b, GrantedScopes: []string{a, b},
				Account:        &switchboard.Account{ID: b, Name: a, Email: b},
				AccountHistory: []switchboard.AccountPeriod{{Account: switchboard.Account{ID: a}, From: at, Until: &at}},
				ConnectedAt:    &at, SettingValues: map[string]string{"mode": a}}}
		want, got, ok := d.both(op, ev)
		if ok && string(got) != string(want) {
			t.Fatalf("differ\nwant: %q\ngot:  %q", want, got)
		}
	})
}
