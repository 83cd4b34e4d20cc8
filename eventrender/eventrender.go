// Package eventrender renders integrationEvents subscription results
// without gqlgen's executor, straight from the domain's types into the
// bytes gqlgen would have sent. The transport asks it once per operation
// (Compile) and then hands it every event.
package eventrender

import (
	"context"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/bont/switchboard/internal/jsonwrite"
	"github.com/bont/switchboard/switchboard"
)

// gqlgen executes a subscription's selection set field by field for every
// event: a field context, a context layer, closures and a marshaler per
// field, then json.Marshal of the response, which compacts the data a
// second time. For a subscriber resuming thousands of events back that is
// most of the cost of the replay. Compile compiles the selection set
// once, with gqlgen's own field collection (fragments, aliases, merging,
// @skip and @include), into a plan of known fields, and renders each event
// straight from the domain types into the bytes gqlgen would have sent.
//
// It renders only what it knows to render the same: an operation with a
// field the plan does not know (a field added to the schema since) or a
// deferred fragment gets no renderer, and an event that would not render
// cleanly (a null where the schema says non-null, an enum value that is
// not a plain name) is handed to gqlgen's executor, which produces its
// usual result.
//
// Where a field has a resolver (provider, actions, settings, the
// nullable strings), the renderer asks the Service what the resolver
// asks it, and writes what the resolver returns. The differential test
// in eventrender_test.go runs the resolvers package under gqlgen's
// executor beside the renderer and compares both, byte for byte, over
// generated operations and events, and fails when a field of these types
// is missing from the plan.

// field identifies a field of one of the types below.
type field uint8

const (
	fTypename field = iota
	// IntegrationEvent
	fEventRevision
	fEventAt
	fEventKind
	fEventIntegration
	fEventPreviousStatus
	// Integration
	fIntID
	fIntProvider
	fIntCategory
	fIntStatus
	fIntStatusReason
	fIntStatusMessage
	fIntBadge
	fIntActions
	fIntAccount
	fIntAccountHistory
	fIntGrantedScopes
	fIntMissingScopes
	fIntConnectedAt
	fIntLastSyncedAt
	fIntSettings
	fIntDisconnectWarning
	fIntRevision
	// Badge
	fBadgeLabel
	fBadgeTone
	// Account
	fAccountID
	fAccountName
	fAccountEmail
	// AccountPeriod
	fPeriodAccount
	fPeriodFrom
	fPeriodUntil
	// Provider
	fProviderID
	fProviderName
	fProviderCategory
	fProviderSettingsLocation
	fProviderAvailable
	fProviderUnavailableReason
	fProviderSettingDefinitions
	fProviderScopes
	// SettingDefinition
	fDefKey
	fDefLabel
	fDefType
	fDefOptions
	fDefDefault
	// Setting
	fSettingKey
	fSettingValue
)

// objectType is a GraphQL object type the plan renders: its fields, and
// the type of each field that has a selection set of its own.
type objectType struct {
	name     string
	fields   map[string]field
	children map[string]*objectType
}

var (
	badgeType   = &objectType{name: "Badge", fields: map[string]field{"label": fBadgeLabel, "tone": fBadgeTone}}
	accountType = &objectType{name: "Account", fields: map[string]field{"id": fAccountID, "name": fAccountName, "email": fAccountEmail}}
	periodType  = &objectType{name: "AccountPeriod",
		fields:   map[string]field{"account": fPeriodAccount, "from": fPeriodFrom, "until": fPeriodUntil},
		children: map[string]*objectType{"account": accountType}}
	definitionType = &objectType{name: "SettingDefinition", fields: map[string]field{
		"key": fDefKey, "label": fDefLabel, "type": fDefType, "options": fDefOptions, "default": fDefDefault}}
	providerType = &objectType{name: "Provider",
		fields: map[string]field{
			"id": fProviderID, "name": fProviderName, "category": fProviderCategory,
			"settingsLocation": fProviderSettingsLocation, "available": fProviderAvailable,
			"unavailableReason": fProviderUnavailableReason, "settingDefinitions": fProviderSettingDefinitions,
			"scopes": fProviderScopes},
		children: map[string]*objectType{"settingDefinitions": definitionType}}
	settingType     = &objectType{name: "Setting", fields: map[string]field{"key": fSettingKey, "value": fSettingValue}}
	integrationType = &objectType{name: "Integration",
		fields: map[string]field{
			"id": fIntID, "provider": fIntProvider, "category": fIntCategory, "status": fIntStatus,
			"statusReason": fIntStatusReason, "statusMessage": fIntStatusMessage, "badge": fIntBadge,
			"actions": fIntActions, "account": fIntAccount, "accountHistory": fIntAccountHistory,
			"grantedScopes": fIntGrantedScopes, "missingScopes": fIntMissingScopes,
			"connectedAt": fIntConnectedAt, "lastSyncedAt": fIntLastSyncedAt, "settings": fIntSettings,
			"disconnectWarning": fIntDisconnectWarning, "revision": fIntRevision},
		children: map[string]*objectType{
			"provider": providerType, "badge": badgeType, "account": accountType,
			"accountHistory": periodType, "settings": settingType}}
	eventType = &objectType{name: "IntegrationEvent",
		fields: map[string]field{
			"revision": fEventRevision, "at": fEventAt, "kind": fEventKind,
			"integration": fEventIntegration, "previousStatus": fEventPreviousStatus},
		children: map[string]*objectType{"integration": integrationType}}
)

// plan is a compiled selection set: its fields in response order.
type plan struct {
	typename string // for __typename
	fields   []planField
}

type planField struct {
	key string // `"alias":`, with the comma before it unless first
	f   field
	sub *plan // for fields with a selection set
}

// compile plans sel on t, or reports false when it holds anything the
// plan does not render.
func compile(rc *graphql.OperationContext, sel ast.SelectionSet, t *objectType) (*plan, bool) {
	collected := graphql.CollectFields(rc, sel, []string{t.name})
	p := &plan{typename: t.name, fields: make([]planField, 0, len(collected))}
	for i, cf := range collected {
		if len(cf.Deferrables) > 0 {
			return nil, false
		}
		f := fTypename
		if cf.Name != "__typename" {
			var ok bool
			if f, ok = t.fields[cf.Name]; !ok {
				return nil, false
			}
		}
		key := strconv.Quote(cf.Alias) + ":"
		if i > 0 {
			key = "," + key
		}
		pf := planField{key: key, f: f}
		if ct := t.children[cf.Name]; ct != nil {
			sub, ok := compile(rc, cf.Selections, ct)
			if !ok {
				return nil, false
			}
			pf.sub = sub
		}
		p.fields = append(p.fields, pf)
	}
	return p, true
}

// Compile compiles rc, an integrationEvents subscription, into a renderer
// of its events for the viewer in ctx, answering from svc; nil when the
// operation holds anything it does not render (gqlgen's executor then
// renders every event).
//
// The renderer appends an item's result, {"data":{...}} as json.Marshal
// writes gqlgen's response, to dst (a new slice when nil) and reports
// true; for an item it does not render (not a *switchboard.Event, or an
// event that would not render cleanly) it returns dst with the length
// it was given and false, and the item goes to gqlgen's executor. It keeps the last
// result's size to size the next, so it is not safe for concurrent use.
func Compile(ctx context.Context, svc *switchboard.Service, rc *graphql.OperationContext) func(dst []byte, item any) ([]byte, bool) {
	if rc == nil || rc.Operation == nil || rc.Operation.Operation != ast.Subscription {
		return nil
	}
	root := graphql.CollectFields(rc, rc.Operation.SelectionSet, []string{"Subscription"})
	if len(root) != 1 || root[0].Name != "integrationEvents" || len(root[0].Deferrables) > 0 {
		return nil
	}
	p, ok := compile(rc, root[0].Selections, eventType)
	if !ok {
		return nil
	}
	er := &eventRenderer{svc: svc, ctx: ctx, plan: p, prefix: `{"data":{` + strconv.Quote(root[0].Alias) + ":"}
	return er.render
}

type eventRenderer struct {
	svc    *switchboard.Service
	ctx    context.Context
	plan   *plan
	prefix string
	size   int // the last result's length, to size the next
}

func (er *eventRenderer) render(dst []byte, item any) (out []byte, ok bool) {
	ev, _ := item.(*switchboard.Event)
	if ev == nil {
		return dst, false
	}
	if dst == nil {
		dst = make([]byte, 0, er.size+64)
	}
	start := len(dst)
	// A panic in the domain is gqlgen's to handle: its executor calls the
	// same code again, recovers per field, logs through the server's
	// recover function and renders what the schema's nullability leaves.
	defer func() {
		if recover() != nil {
			out, ok = dst[:start], false
		}
	}()
	dst = append(dst, er.prefix...)
	dst, ok = er.object(dst, er.plan, ev)
	if !ok {
		return dst[:start], false
	}
	dst = append(dst, "}}"...)
	dst = jsonwrite.HTMLEscape(dst, start)
	er.size = len(dst) - start
	return dst, true
}

// object renders obj, a pointer to the Go value of p's type, as p
// selects it.
func (er *eventRenderer) object(dst []byte, p *plan, obj any) ([]byte, bool) {
	dst = append(dst, '{')
	for i := range p.fields {
		pf := &p.fields[i]
		dst = append(dst, pf.key...)
		var ok bool
		if pf.f == fTypename {
			dst = appendString(dst, p.typename)
		} else if dst, ok = er.field(dst, pf, obj); !ok {
			return dst, false
		}
	}
	return append(dst, '}'), true
}

// field renders one field of obj other than __typename; false leaves the
// event to gqlgen.
func (er *eventRenderer) field(dst []byte, pf *planField, obj any) ([]byte, bool) {
	switch pf.f {
	// IntegrationEvent
	case fEventRevision:
		return appendRevision(dst, obj.(*switchboard.Event).Revision), true
	case fEventAt:
		return appendTime(dst, obj.(*switchboard.Event).At)
	case fEventKind:
		return jsonwrite.GraphQLString(dst, string(obj.(*switchboard.Event).Kind)), true
	case fEventIntegration:
		in := obj.(*switchboard.Event).Integration
		if in == nil {
			return dst, false
		}
		return er.object(dst, pf.sub, in)
	case fEventPreviousStatus:
		st := obj.(*switchboard.Event).PreviousStatus
		if st == nil {
			return append(dst, "null"...), true
		}
		return appendEnum(dst, string(*st))

	// Integration
	case fIntID:
		return appendString(dst, obj.(*switchboard.Integration).ID), true
	case fIntProvider:
		pv, err := er.svc.Provider(obj.(*switchboard.Integration).ProviderID)
		if err != nil || pv == nil {
			return dst, false
		}
		return er.object(dst, pf.sub, pv)
	case fIntCategory:
		return appendEnum(dst, string(obj.(*switchboard.Integration).Category))
	case fIntStatus:
		return appendEnum(dst, string(obj.(*switchboard.Integration).Status))
	case fIntStatusReason:
		return appendOptional(dst, obj.(*switchboard.Integration).StatusReason), true
	case fIntStatusMessage:
		return appendOptional(dst, obj.(*switchboard.Integration).StatusMessage), true
	case fIntBadge:
		b := obj.(*switchboard.Integration).Badge()
		return er.object(dst, pf.sub, &b)
	case fIntActions:
		actions := er.svc.Actions(er.ctx, obj.(*switchboard.Integration))
		dst = append(dst, '[')
		for j, a := range actions {
			if j > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendEnum(dst, string(a)); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case fIntAccount:
		a := obj.(*switchboard.Integration).Account
		if a == nil {
			return append(dst, "null"...), true
		}
		return er.object(dst, pf.sub, a)
	case fIntAccountHistory:
		history := obj.(*switchboard.Integration).AccountHistory
		dst = append(dst, '[')
		for j := range history {
			if j > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = er.object(dst, pf.sub, &history[j]); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case fIntGrantedScopes:
		return appendStrings(dst, obj.(*switchboard.Integration).GrantedScopes), true
	case fIntMissingScopes:
		return appendStrings(dst, obj.(*switchboard.Integration).MissingScopes), true
	case fIntConnectedAt:
		return appendOptionalTime(dst, obj.(*switchboard.Integration).ConnectedAt), true
	case fIntLastSyncedAt:
		return appendOptionalTime(dst, obj.(*switchboard.Integration).LastSyncedAt), true
	case fIntSettings:
		settings := er.svc.Settings(obj.(*switchboard.Integration))
		dst = append(dst, '[')
		for j := range settings {
			if j > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = er.object(dst, pf.sub, &settings[j]); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case fIntDisconnectWarning:
		return appendString(dst, obj.(*switchboard.Integration).DisconnectWarning()), true
	case fIntRevision:
		return appendRevision(dst, obj.(*switchboard.Integration).Revision), true

	// Badge
	case fBadgeLabel:
		return appendString(dst, obj.(*switchboard.Badge).Label), true
	case fBadgeTone:
		return appendEnum(dst, string(obj.(*switchboard.Badge).Tone))

	// Account
	case fAccountID:
		return appendString(dst, obj.(*switchboard.Account).ID), true
	case fAccountName:
		return appendOptional(dst, obj.(*switchboard.Account).Name), true
	case fAccountEmail:
		return appendOptional(dst, obj.(*switchboard.Account).Email), true

	// AccountPeriod
	case fPeriodAccount:
		return er.object(dst, pf.sub, &obj.(*switchboard.AccountPeriod).Account)
	case fPeriodFrom:
		return appendTime(dst, obj.(*switchboard.AccountPeriod).From)
	case fPeriodUntil:
		return appendOptionalTime(dst, obj.(*switchboard.AccountPeriod).Until), true

	// Provider
	case fProviderID:
		return appendString(dst, obj.(*switchboard.Provider).ID), true
	case fProviderName:
		return appendString(dst, obj.(*switchboard.Provider).Name), true
	case fProviderCategory:
		return appendEnum(dst, string(obj.(*switchboard.Provider).Category))
	case fProviderSettingsLocation:
		return appendString(dst, obj.(*switchboard.Provider).SettingsLocation()), true
	case fProviderAvailable:
		return strconv.AppendBool(dst, obj.(*switchboard.Provider).Available), true
	case fProviderUnavailableReason:
		return appendOptional(dst, obj.(*switchboard.Provider).UnavailableReason), true
	case fProviderSettingDefinitions:
		defs := obj.(*switchboard.Provider).SettingDefinitions
		dst = append(dst, '[')
		for j := range defs {
			if j > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = er.object(dst, pf.sub, &defs[j]); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case fProviderScopes:
		return appendStrings(dst, obj.(*switchboard.Provider).Scopes), true

	// SettingDefinition
	case fDefKey:
		return appendString(dst, obj.(*switchboard.SettingDefinition).Key), true
	case fDefLabel:
		return appendString(dst, obj.(*switchboard.SettingDefinition).Label), true
	case fDefType:
		return appendEnum(dst, string(obj.(*switchboard.SettingDefinition).Type))
	case fDefOptions:
		return appendStrings(dst, obj.(*switchboard.SettingDefinition).Options), true
	case fDefDefault:
		return appendString(dst, obj.(*switchboard.SettingDefinition).Default), true

	// Setting
	case fSettingKey:
		return appendString(dst, obj.(*switchboard.Setting).Key), true
	case fSettingValue:
		return appendString(dst, obj.(*switchboard.Setting).Value), true
	}
	return dst, false
}

// ---- values, as the resolvers and gqlgen's marshalers write them ----

// appendString is a String! (graphql.MarshalString).
func appendString(dst []byte, s string) []byte { return jsonwrite.GraphQLString(dst, s) }

// appendOptional is a nullable String whose resolver maps "" to null.
func appendOptional(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return jsonwrite.GraphQLString(dst, s)
}

// appendStrings is a [String!]!: a nil slice is an empty list.
func appendStrings(dst []byte, ss []string) []byte { return jsonwrite.GraphQLStrings(dst, ss) }

// appendEnum is the domain enums' MarshalGQL (strconv.Quote) for values
// that are plain names; anything else is left to gqlgen.
func appendEnum(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return dst, false
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"'), true
}

// appendRevision is gqlscalar.MarshalRevision.
func appendRevision(dst []byte, r uint64) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, r, 10)
	return append(dst, '"')
}

// appendTime is a Time!: graphql.MarshalTime, whose null for the zero
// time is an error for a non-null field, left to gqlgen.
func appendTime(dst []byte, t time.Time) ([]byte, bool) {
	if t.IsZero() {
		return dst, false
	}
	return jsonwrite.GraphQLTime(dst, t), true
}

// appendOptionalTime is a nullable Time: null for nil and for the zero
// time.
func appendOptionalTime(dst []byte, t *time.Time) []byte {
	if t == nil {
		return append(dst, "null"...)
	}
	return jsonwrite.GraphQLTime(dst, *t)
}
