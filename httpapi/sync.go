package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// The sync API is a small JSON API for the product's sync engine, apart
// from GraphQL because it hands out access tokens, which never appear in a
// GraphQL response. Every request needs a bearer token with the sync scope;
// errors are {"error": {"code", "message", "field"?}} with the domain's
// stable codes.
//
//	GET  /sync/v1/integrations/{id}               generation, status, checkpoint
//	POST /sync/v1/integrations/{id}/token         {generation?} → access token
//	POST /sync/v1/integrations/{id}/progress      {generation, checkpoint, syncedAt?}
//	POST /sync/v1/integrations/{id}/auth-failure  {generation, tokenId?, status, body?} → new token
func (o Options) syncRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /sync/v1/integrations/{id}", o.syncHandler(o.syncStatus))
	mux.HandleFunc("POST /sync/v1/integrations/{id}/token", o.syncHandler(o.syncToken))
	mux.HandleFunc("POST /sync/v1/integrations/{id}/progress", o.syncHandler(o.syncProgress))
	mux.HandleFunc("POST /sync/v1/integrations/{id}/auth-failure", o.syncHandler(o.syncAuthFailure))
}

type syncFunc func(r *http.Request) (any, error)

func (o Options) syncHandler(f syncFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		p, err := o.Service.Authenticate(r.Context(), bearer(r.Header.Get("Authorization")))
		if err != nil {
			o.writeSyncError(w, err)
			return
		}
		r = r.WithContext(switchboard.NewContextWithPrincipal(r.Context(), p))
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		out, err := f(r)
		if err != nil {
			o.writeSyncError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

func (o Options) writeSyncError(w http.ResponseWriter, err error) {
	code := switchboard.ErrorCode(err)
	status := http.StatusInternalServerError
	switch code {
	case switchboard.EUNAUTHENTICATED:
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
	case switchboard.EFORBIDDEN:
		status = http.StatusForbidden
	case switchboard.ENOTFOUND:
		status = http.StatusNotFound
	case switchboard.EINVALID:
		status = http.StatusBadRequest
	case switchboard.ECONFLICT:
		status = http.StatusConflict
	case switchboard.EUNAVAILABLE:
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	default:
		o.Logger.Error("sync api", "err", err)
	}
	body := map[string]any{"code": code, "message": switchboard.ErrorMessage(err)}
	var de *switchboard.Error
	if errors.As(err, &de) && de.Field != "" {
		body["field"] = de.Field
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

// decode reads a JSON body; an empty body leaves v as it is.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return switchboard.Errorf(switchboard.EINVALID, "The request body is not valid JSON for this endpoint: %s", err)
	}
	return nil
}

// generation accepts a JSON number or a decimal string (uint64 does not
// fit a JavaScript number).
type generation uint64

func (g *generation) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		b = []byte(s)
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return errors.New("generation must be a positive whole number")
	}
	*g = generation(n)
	return nil
}

type syncTokenJSON struct {
	IntegrationID string            `json:"integrationId"`
	ProviderID    string            `json:"providerId"`
	Generation    uint64            `json:"generation"`
	Status        string            `json:"status"`
	AccessToken   string            `json:"accessToken"`
	TokenID       string            `json:"tokenId"`
	TokenType     string            `json:"tokenType,omitempty"`
	ExpiresAt     *time.Time        `json:"expiresAt"`
	Extra         map[string]string `json:"extra,omitempty"`
}

func tokenJSON(t *switchboard.SyncToken) syncTokenJSON {
	out := syncTokenJSON{IntegrationID: t.IntegrationID, ProviderID: t.ProviderID, Generation: t.Generation,
		Status: string(t.Status), AccessToken: t.AccessToken, TokenID: t.TokenID, TokenType: t.TokenType, Extra: t.Extra}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt.UTC()
		out.ExpiresAt = &e
	}
	return out
}

type syncStateJSON struct {
	IntegrationID string     `json:"integrationId"`
	ProviderID    string     `json:"providerId"`
	Generation    uint64     `json:"generation"`
	Status        string     `json:"status"`
	StatusReason  string     `json:"statusReason,omitempty"`
	Checkpoint    string     `json:"checkpoint"`
	LastSyncedAt  *time.Time `json:"lastSyncedAt"`
	Revision      uint64     `json:"revision,string"`
}

func stateJSON(in *switchboard.Integration) syncStateJSON {
	return syncStateJSON{IntegrationID: in.ID, ProviderID: in.ProviderID, Generation: in.Generation,
		Status: string(in.Status), StatusReason: in.StatusReason, Checkpoint: in.SyncCheckpoint,
		LastSyncedAt: in.LastSyncedAt, Revision: in.Revision}
}

func (o Options) syncStatus(r *http.Request) (any, error) {
	in, err := o.Service.SyncStatus(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return stateJSON(in), nil
}

func (o Options) syncToken(r *http.Request) (any, error) {
	var body struct {
		Generation generation `json:"generation"`
	}
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	t, err := o.Service.SyncAccessToken(r.Context(), r.PathValue("id"), uint64(body.Generation))
	if err != nil {
		return nil, err
	}
	return tokenJSON(t), nil
}

func (o Options) syncProgress(r *http.Request) (any, error) {
	var body struct {
		Generation generation `json:"generation"`
		Checkpoint string     `json:"checkpoint"`
		SyncedAt   *time.Time `json:"syncedAt"`
	}
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	p := switchboard.SyncProgress{Generation: uint64(body.Generation), Checkpoint: body.Checkpoint}
	if body.SyncedAt != nil {
		p.SyncedAt = *body.SyncedAt
	}
	in, err := o.Service.ReportSyncProgress(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return nil, err
	}
	return stateJSON(in), nil
}

func (o Options) syncAuthFailure(r *http.Request) (any, error) {
	var body struct {
		Generation generation `json:"generation"`
		TokenID    string     `json:"tokenId"`
		Status     int        `json:"status"`
		Body       string     `json:"body"`
	}
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	t, err := o.Service.ReportAuthFailure(r.Context(), r.PathValue("id"), switchboard.AuthFailure{
		Generation: uint64(body.Generation), TokenID: body.TokenID, HTTPStatus: body.Status, Body: body.Body})
	if err != nil {
		return nil, err
	}
	return tokenJSON(t), nil
}
