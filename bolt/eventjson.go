package bolt

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/bont/switchboard/switchboard"
)

// appendEvent appends the JSON of ev to b, byte for byte what
// json.Marshal(ev) gives, taking the integration's JSON from integration
// (json.Marshal(ev.Integration), which the commit has just written)
// instead of encoding it a second time. The changelog stores this.
func appendEvent(b []byte, ev *switchboard.Event, integration []byte) ([]byte, error) {
	b = append(b, `{"Revision":`...)
	b = strconv.AppendUint(b, ev.Revision, 10)
	b = append(b, `,"At":"`...)
	b, err := ev.At.AppendText(b)
	if err != nil {
		// What json.Marshal refuses (a year outside 0–9999), it refuses
		// here too, with its own error.
		_, err = json.Marshal(ev)
		return nil, err
	}
	b = append(b, `","WorkspaceID":`...)
	b = appendJSONString(b, ev.WorkspaceID)
	b = append(b, `,"Kind":`...)
	b = appendJSONString(b, string(ev.Kind))
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
		b = appendJSONString(b, string(*ev.PreviousStatus))
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes a string: plain
// printable ASCII as is, anything else (quotes, backslashes, control
// characters, the HTML-sensitive <, > and &, non-ASCII, invalid UTF-8)
// through json.Marshal itself, so the escaping is exactly its own.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendAuditEntry appends the JSON of a to b, byte for byte what
// json.Marshal(a) gives.
func appendAuditEntry(b []byte, a *switchboard.AuditEntry) ([]byte, error) {
	b = append(b, `{"Seq":`...)
	b = strconv.AppendUint(b, a.Seq, 10)
	b = append(b, `,"WorkspaceID":`...)
	b = appendJSONString(b, a.WorkspaceID)
	b = append(b, `,"At":"`...)
	b, err := a.At.AppendText(b)
	if err != nil {
		_, err = json.Marshal(a)
		return nil, err
	}
	b = append(b, `","UserID":`...)
	b = appendJSONString(b, a.UserID)
	b = append(b, `,"TokenID":`...)
	b = appendJSONString(b, a.TokenID)
	b = append(b, `,"Role":`...)
	b = appendJSONString(b, string(a.Role))
	b = append(b, `,"Action":`...)
	b = appendJSONString(b, a.Action)
	b = append(b, `,"Target":`...)
	b = appendJSONString(b, a.Target)
	b = append(b, `,"Detail":`...)
	b = appendJSONString(b, a.Detail)
	return append(b, '}'), nil
}
