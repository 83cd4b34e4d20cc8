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
