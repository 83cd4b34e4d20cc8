package bolt

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bont/switchboard/internal/jsonwrite"
	"github.com/bont/switchboard/switchboard"
)

// appendEvent appends the JSON of ev to b, byte for byte what
// json.Marshal(ev) gives, taking the integration's JSON from integration
// (json.Marshal(ev.Integration), which the commit has just written)
// instead of encoding it a second time. The changelog stores this.
func appendEvent(b []byte, ev *switchboard.Event, integration []byte) ([]byte, error) {
	if !layoutKnown {
		raw, err := json.Marshal(ev)
		return append(b, raw...), err
	}
	b = append(b, `{"Revision":`...)
	b = strconv.AppendUint(b, ev.Revision, 10)
	b = append(b, `,"At":`...)
	b, err := jsonwrite.Time(b, &ev.At)
	if err != nil {
		// What json.Marshal refuses (a year outside 0–9999), it refuses
		// here too, with its own error.
		_, err = json.Marshal(ev)
		return nil, err
	}
	b = append(b, `,"WorkspaceID":`...)
	b = jsonwrite.String(b, ev.WorkspaceID)
	b = append(b, `,"Kind":`...)
	b = jsonwrite.String(b, string(ev.Kind))
	b = append(b, `,"Integration":`...)
	if ev.Integration == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, integration...)
	}
	b = append(b, `,"PreviousStatus":`...)
	if ev.PreviousStatus == nil {
		b = append(b, "null"...)
	} else {
		b = jsonwrite.String(b, string(*ev.PreviousStatus))
	}
	return append(b, '}'), nil
}

// appendAuditEntry appends the JSON of a to b, byte for byte what
// json.Marshal(a) gives.
func appendAuditEntry(b []byte, a *switchboard.AuditEntry) ([]byte, error) {
	if !layoutKnown {
		raw, err := json.Marshal(a)
		return append(b, raw...), err
	}
	b = append(b, `{"Seq":`...)
	b = strconv.AppendUint(b, a.Seq, 10)
	b = append(b, `,"WorkspaceID":`...)
	b = jsonwrite.String(b, a.WorkspaceID)
	b = append(b, `,"At":`...)
	b, err := jsonwrite.Time(b, &a.At)
	if err != nil {
		_, err = json.Marshal(a)
		return nil, err
	}
	b = append(b, `,"UserID":`...)
	b = jsonwrite.String(b, a.UserID)
	b = append(b, `,"TokenID":`...)
	b = jsonwrite.String(b, a.TokenID)
	b = append(b, `,"Role":`...)
	b = jsonwrite.String(b, string(a.Role))
	b = append(b, `,"Action":`...)
	b = jsonwrite.String(b, a.Action)
	b = append(b, `,"Target":`...)
	b = jsonwrite.String(b, a.Target)
	b = append(b, `,"Detail":`...)
	b = jsonwrite.String(b, a.Detail)
	return append(b, '}'), nil
}

// scratch holds buffers to encode into before copying the result out at
// its exact size.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// encodeIntegration is appendIntegration into a new slice of the exact
// length.
func encodeIntegration(in *switchboard.Integration) ([]byte, error) {
	bp := scratch.Get().(*[]byte)
	b, err := appendIntegration((*bp)[:0], in)
	var out []byte
	if err == nil {
		out = bytes.Clone(b)
	}
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		scratch.Put(bp)
	}
	return out, err
}

// appendIntegration appends the JSON of in to b, byte for byte what
// json.Marshal(in) gives, without reflection: every commit encodes one,
// inside the batch's serial part. It encodes the fields of
// switchboard.Integration as of integrationFields; when the type has
// other fields (a field was added and this function not taught it) it
// leaves the work to json.Marshal, so nothing is ever dropped.
func appendIntegration(b []byte, in *switchboard.Integration) ([]byte, error) {
	if !layoutKnown || in == nil {
		raw, err := json.Marshal(in)
		return append(b, raw...), err
	}
	start := len(b)
	var err error
	b = append(b, `{"ID":`...)
	b = jsonwrite.String(b, in.ID)
	b = append(b, `,"WorkspaceID":`...)
	b = jsonwrite.String(b, in.WorkspaceID)
	b = append(b, `,"ProviderID":`...)
	b = jsonwrite.String(b, in.ProviderID)
	b = append(b, `,"Category":`...)
	b = jsonwrite.String(b, string(in.Category))
	b = append(b, `,"OwnerUserID":`...)
	b = jsonwrite.String(b, in.OwnerUserID)
	b = append(b, `,"Status":`...)
	b = jsonwrite.String(b, string(in.Status))
	b = append(b, `,"StatusReason":`...)
	b = jsonwrite.String(b, in.StatusReason)
	b = append(b, `,"StatusMessage":`...)
	b = jsonwrite.String(b, in.StatusMessage)
	b = append(b, `,"Generation":`...)
	b = strconv.AppendUint(b, in.Generation, 10)
	b = append(b, `,"Account":`...)
	if in.Account == nil {
		b = append(b, "null"...)
	} else {
		b = appendAccount(b, in.Account)
	}
	b = append(b, `,"AccountHistory":`...)
	if in.AccountHistory == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range in.AccountHistory {
			p := &in.AccountHistory[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"Account":`...)
			b = appendAccount(b, &p.Account)
			b = append(b, `,"From":`...)
			if b, err = jsonwrite.Time(b, &p.From); err != nil {
				break
			}
			b = append(b, `,"Until":`...)
			if b, err = jsonwrite.Time(b, p.Until); err != nil {
				break
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"GrantedScopes":`...)
	b = jsonwrite.Strings(b, in.GrantedScopes)
	b = append(b, `,"MissingScopes":`...)
	b = jsonwrite.Strings(b, in.MissingScopes)
	b = append(b, `,"ConnectedAt":`...)
	b, err = appendTimeErr(b, in.ConnectedAt, err)
	b = append(b, `,"LastSyncedAt":`...)
	b, err = appendTimeErr(b, in.LastSyncedAt, err)
	b = append(b, `,"SyncCheckpoint":`...)
	b = jsonwrite.String(b, in.SyncCheckpoint)
	b = append(b, `,"SettingValues":`...)
	if in.SettingValues == nil {
		b = append(b, "null"...)
	} else {
		keys := make([]string, 0, len(in.SettingValues))
		for k := range in.SettingValues {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonwrite.String(b, k)
			b = append(b, ':')
			b = jsonwrite.String(b, in.SettingValues[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"CreatedAt":`...)
	b, err = appendTimeErr(b, &in.CreatedAt, err)
	b = append(b, `,"UpdatedAt":`...)
	b, err = appendTimeErr(b, &in.UpdatedAt, err)
	b = append(b, `,"Revision":`...)
	b = strconv.AppendUint(b, in.Revision, 10)
	b = append(b, '}')
	if err != nil {
		// A time json.Marshal refuses: refuse it with json.Marshal's error.
		_, err = json.Marshal(in)
		return b[:start], err
	}
	return b, nil
}

func appendAccount(b []byte, a *switchboard.Account) []byte {
	b = append(b, `{"ID":`...)
	b = jsonwrite.String(b, a.ID)
	b = append(b, `,"Name":`...)
	b = jsonwrite.String(b, a.Name)
	b = append(b, `,"Email":`...)
	b = jsonwrite.String(b, a.Email)
	return append(b, '}')
}

// appendTimeErr is jsonwrite.Time that keeps the first error.
func appendTimeErr(b []byte, t *time.Time, err error) ([]byte, error) {
	b, e := jsonwrite.Time(b, t)
	if err == nil {
		err = e
	}
	return b, err
}

// knownLayouts is what appendIntegration, appendEvent and
// appendAuditEntry write: the fields of the types they encode, in order,
// with their types.
var knownLayouts = map[reflect.Type]string{
	reflect.TypeFor[switchboard.Event]():         "Revision uint64, At time.Time, WorkspaceID string, Kind switchboard.EventKind, Integration *switchboard.Integration, PreviousStatus *switchboard.Status",
	reflect.TypeFor[switchboard.AuditEntry]():    "Seq uint64, WorkspaceID string, At time.Time, UserID string, TokenID string, Role switchboard.Role, Action string, Target string, Detail string",
	reflect.TypeFor[switchboard.Integration]():   "ID string, WorkspaceID string, ProviderID string, Category switchboard.Category, OwnerUserID string, Status switchboard.Status, StatusReason string, StatusMessage string, Generation uint64, Account *switchboard.Account, AccountHistory []switchboard.AccountPeriod, GrantedScopes []string, MissingScopes []string, ConnectedAt *time.Time, LastSyncedAt *time.Time, SyncCheckpoint string, SettingValues map[string]string, CreatedAt time.Time, UpdatedAt time.Time, Revision uint64",
	reflect.TypeFor[switchboard.Account]():       "ID string, Name string, Email string",
	reflect.TypeFor[switchboard.AccountPeriod](): "Account switchboard.Account, From time.Time, Until *time.Time",
}

// layoutKnown says the types still have exactly those fields, none with
// a JSON tag and none with a JSON method of its own. When one changed,
// the encoders leave the work to json.Marshal.
var layoutKnown = func() bool {
	for t, want := range knownLayouts {
		if layout(t) != want {
			return false
		}
	}
	return true
}()

func layout(t reflect.Type) string {
	var parts []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag != "" || !f.IsExported() {
			return "tagged or unexported field " + f.Name
		}
		parts = append(parts, f.Name+" "+f.Type.String())
	}
	for _, typ := range []reflect.Type{t, reflect.PointerTo(t)} {
		if typ.Implements(reflect.TypeFor[json.Marshaler]()) || typ.Implements(reflect.TypeFor[encoding.TextMarshaler]()) {
			return "marshaler"
		}
	}
	for _, st := range []reflect.Type{reflect.TypeFor[switchboard.Category](), reflect.TypeFor[switchboard.Status](), reflect.TypeFor[switchboard.EventKind](), reflect.TypeFor[switchboard.Role]()} {
		if st.Kind() != reflect.String || st.Implements(reflect.TypeFor[json.Marshaler]()) || st.Implements(reflect.TypeFor[encoding.TextMarshaler]()) {
			return "string type " + st.String() + " changed"
		}
	}
	return strings.Join(parts, ", ")
}
