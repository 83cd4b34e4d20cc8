package switchboard

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Provider is what the catalogue knows about one OAuth provider, as shown
// to a workspace. Available and UnavailableReason are per workspace.
type Provider struct {
	ID                 string
	Name               string
	Category           Category
	Available          bool
	UnavailableReason  string
	SettingDefinitions []SettingDefinition
	// Scopes are the scopes an integration needs; a grant without one of
	// them leaves the integration in ERROR with MissingScopes filled.
	Scopes []string
}

// SettingsLocation is where the product shows this provider's card.
func (p *Provider) SettingsLocation() string { return p.Category.SettingsLocation() }

// Definition returns the setting definition for key.
func (p *Provider) Definition(key string) (SettingDefinition, bool) {
	for _, d := range p.SettingDefinitions {
		if d.Key == key {
			return d, true
		}
	}
	return SettingDefinition{}, false
}

// SettingType is the type of a setting's value; every value travels as a
// string.
type SettingType string

const (
	SettingBoolean SettingType = "BOOLEAN"
	SettingInteger SettingType = "INTEGER"
	SettingString  SettingType = "STRING"
	SettingEnum    SettingType = "ENUM"
)

func (t SettingType) MarshalGQL(w io.Writer) { _, _ = io.WriteString(w, strconv.Quote(string(t))) }
func (t *SettingType) UnmarshalGQL(v any) error {
	return unmarshalEnum(v, (*string)(t), func(x string) bool {
		switch SettingType(x) {
		case SettingBoolean, SettingInteger, SettingString, SettingEnum:
			return true
		}
		return false
	}, "SettingType")
}

// SettingDefinition describes one setting a provider's integrations accept.
type SettingDefinition struct {
	Key     string
	Label   string
	Type    SettingType
	Options []string // ENUM only
	Default string
	// Min and Max bound INTEGER values when Max > Min.
	Min, Max int64
	// MaxLength bounds STRING values; 0 means 256.
	MaxLength int
}

// Validate checks a value against the definition and returns it in
// canonical form ("true"/"false" for booleans, no leading zeros for
// integers).
func (d SettingDefinition) Validate(value string) (string, error) {
	bad := func(format string, args ...any) error {
		return &Error{Code: EINVALID, Field: d.Key, Message: fmt.Sprintf("Setting %q: ", d.Key) + fmt.Sprintf(format, args...)}
	}
	switch d.Type {
	case SettingBoolean:
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if err != nil {
			return "", bad("%q is not true or false.", value)
		}
		return strconv.FormatBool(b), nil
	case SettingInteger:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return "", bad("%q is not a whole number.", value)
		}
		if d.Max > d.Min && (n < d.Min || n > d.Max) {
			return "", bad("%d is outside %d to %d.", n, d.Min, d.Max)
		}
		return strconv.FormatInt(n, 10), nil
	case SettingEnum:
		if !slices.Contains(d.Options, value) {
			return "", bad("%q is not one of %s.", value, strings.Join(d.Options, ", "))
		}
		return value, nil
	case SettingString:
		max := d.MaxLength
		if max == 0 {
			max = 256
		}
		if len(value) > max {
			return "", bad("longer than %d characters.", max)
		}
		return value, nil
	}
	return "", bad("unknown setting type %s.", d.Type)
}

// Setting is one key and its effective value.
type Setting struct {
	Key   string
	Value string
}

// SettingInput is one key and value to set.
type SettingInput struct {
	Key   string
	Value string
}

// ApplySettings validates in against p's definitions and returns the new
// values map, leaving cur untouched. It fails with EINVALID naming the first
// bad key; nothing is applied then.
func (p *Provider) ApplySettings(cur map[string]string, in []SettingInput) (map[string]string, error) {
	next := make(map[string]string, len(cur)+len(in))
	for k, v := range cur {
		next[k] = v
	}
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		d, ok := p.Definition(s.Key)
		if !ok {
			return nil, &Error{Code: EINVALID, Field: s.Key, Message: fmt.Sprintf("Setting %q does not exist for %s.", s.Key, p.Name)}
		}
		if seen[s.Key] {
			return nil, &Error{Code: EINVALID, Field: s.Key, Message: fmt.Sprintf("Setting %q is given twice.", s.Key)}
		}
		seen[s.Key] = true
		v, err := d.Validate(s.Value)
		if err != nil {
			return nil, err
		}
		next[s.Key] = v
	}
	return next, nil
}

// EffectiveSettings lists every defined setting with its value or default,
// in definition order.
func (p *Provider) EffectiveSettings(values map[string]string) []Setting {
	out := make([]Setting, 0, len(p.SettingDefinitions))
	for _, d := range p.SettingDefinitions {
		v, ok := values[d.Key]
		if !ok {
			v = d.Default
		}
		out = append(out, Setting{Key: d.Key, Value: v})
	}
	return out
}

// MissingScopes returns the required scopes not in granted, in required order.
func MissingScopes(required, granted []string) []string {
	var missing []string
	for _, s := range required {
		if !slices.Contains(granted, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
