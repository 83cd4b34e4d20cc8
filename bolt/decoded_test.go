package bolt

import (
	"encoding/json"
	"testing"

	"github.com/bont/switchboard/switchboard"
)

func TestDecodedCacheMatchesTheBytes(t *testing.T) {
	var c decodedCache
	enc := func(in *switchboard.Integration) []byte {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := enc(&switchboard.Integration{ID: "i", Revision: 1, SettingValues: map[string]string{"k": "1"}, GrantedScopes: []string{"s"}})
	first, err := c.integration("w\x00i", a)
	if err != nil {
		t.Fatal(err)
	}
	// What a caller does to its copy never reaches the next reader.
	first.SettingValues["k"] = "changed"
	first.GrantedScopes[0] = "changed"
	again, err := c.integration("w\x00i", a)
	if err != nil || again.SettingValues["k"] != "1" || again.GrantedScopes[0] != "s" || again.AccountHistory != nil {
		t.Fatalf("second read = %+v, %v", again, err)
	}
	// Other bytes under the same key are decoded, not served from memory.
	b := enc(&switchboard.Integration{ID: "i", Revision: 2})
	next, err := c.integration("w\x00i", b)
	if err != nil || next.Revision != 2 || next.SettingValues != nil {
		t.Fatalf("after a change = %+v, %v", next, err)
	}
	if _, err := c.integration("w\x00i", []byte("{")); err == nil {
		t.Fatal("bad JSON decoded")
	}
}
