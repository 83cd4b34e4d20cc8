package switchboard

import (
	"maps"
	"testing"
)

var testProvider = &Provider{
	ID: "p", Name: "Test CRM", Category: CategoryCRM,
	SettingDefinitions: []SettingDefinition{
		{Key: "interval", Label: "Interval", Type: SettingInteger, Default: "15", Min: 5, Max: 60},
		{Key: "deals", Label: "Deals", Type: SettingBoolean, Default: "true"},
		{Key: "pipeline", Label: "Pipeline", Type: SettingEnum, Options: []string{"sales", "all"}, Default: "sales"},
		{Key: "label", Label: "Label", Type: SettingString, MaxLength: 5},
	},
}

func TestApplySettings(t *testing.T) {
	tests := []struct {
		name      string
		in        []SettingInput
		want      map[string]string
		wantField string
	}{
		{"integer canonical", []SettingInput{{"interval", " 030 "}}, map[string]string{"interval": "30"}, ""},
		{"boolean canonical", []SettingInput{{"deals", "0"}}, map[string]string{"deals": "false"}, ""},
		{"enum", []SettingInput{{"pipeline", "all"}}, map[string]string{"pipeline": "all"}, ""},
		{"several", []SettingInput{{"pipeline", "all"}, {"label", "abc"}}, map[string]string{"pipeline": "all", "label": "abc"}, ""},
		{"unknown key", []SettingInput{{"interval", "10"}, {"colour", "red"}}, nil, "colour"},
		{"out of range", []SettingInput{{"interval", "61"}}, nil, "interval"},
		{"not a number", []SettingInput{{"interval", "ten"}}, nil, "interval"},
		{"not a boolean", []SettingInput{{"deals", "maybe"}}, nil, "deals"},
		{"not an option", []SettingInput{{"pipeline", "Sales"}}, nil, "pipeline"},
		{"too long", []SettingInput{{"label", "abcdef"}}, nil, "label"},
		{"twice", []SettingInput{{"label", "a"}, {"label", "b"}}, nil, "label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := map[string]string{"deals": "true"}
			got, err := testProvider.ApplySettings(cur, tt.in)
			if tt.wantField != "" {
				e, ok := err.(*Error)
				if !ok || e.Code != EINVALID || e.Field != tt.wantField {
					t.Fatalf("got %v; want INVALID_INPUT naming %q", err, tt.wantField)
				}
				if got != nil {
					t.Errorf("got values %v on error; want nil", got)
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				want := map[string]string{"deals": "true"}
				maps.Copy(want, tt.want)
				if !maps.Equal(got, want) {
					t.Errorf("got %v; want %v", got, want)
				}
			}
			if cur["deals"] != "true" || len(cur) != 1 {
				t.Errorf("input map changed: %v", cur)
			}
		})
	}
}

func TestEffectiveSettings(t *testing.T) {
	got := testProvider.EffectiveSettings(map[string]string{"pipeline": "all"})
	want := []Setting{{"interval", "15"}, {"deals", "true"}, {"pipeline", "all"}, {"label", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("setting %d: got %v; want %v", i, got[i], want[i])
		}
	}
}

func TestMissingScopes(t *testing.T) {
	got := MissingScopes([]string{"a", "b", "c"}, []string{"c", "a"})
	if len(got) != 1 || got[0] != "b" {
		t.Errorf("got %v; want [b]", got)
	}
	if got := MissingScopes([]string{"a"}, []string{"a", "z"}); got != nil {
		t.Errorf("got %v; want none", got)
	}
}
