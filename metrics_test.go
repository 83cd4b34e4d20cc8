package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// /metrics holds the operator's figures over every workspace: production
// serves it on the main address only to the scrape token, and without one
// only on -metrics-addr.
func TestMetricsNeedTheScrapeTokenOrTheirOwnAddress(t *testing.T) {
	t.Setenv("SWITCHBOARD_SECRET_KEY", "k1:"+strings.Repeat("A", 43)+"=")
	get := func(t *testing.T, url, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("production without a token", func(t *testing.T) {
		m := mustStart(t, "", func(m *Main) {
			m.Config.Dev = false
			m.Config.MetricsToken = ""
			m.Config.MetricsAddr = "127.0.0.1:0"
		})
		if code, _ := get(t, m.URL+"/metrics", ""); code != http.StatusNotFound {
			t.Errorf("main address: got %d; want 404", code)
		}
		code, body := get(t, m.MetricsURL, "")
		if code != http.StatusOK || !strings.Contains(body, "switchboard_refresh_scheduled_connections") {
			t.Errorf("-metrics-addr: got %d; want 200 with the gateway's metrics", code)
		}
	})

	t.Run("production with a token", func(t *testing.T) {
		const token = "scrape-7f3c9a"
		m := mustStart(t, "", func(m *Main) {
			m.Config.Dev = false
			m.Config.MetricsToken = token
		})
		for _, auth := range []string{"", "Bearer wrong", token, "Basic " + token} {
			code, _ := get(t, m.URL+"/metrics", auth)
			if code != http.StatusUnauthorized {
				t.Errorf("Authorization %q: got %d; want 401", auth, code)
			}
		}
		code, body := get(t, m.URL+"/metrics", "Bearer "+token)
		if code != http.StatusOK || !strings.Contains(body, "switchboard_http_requests_total") {
			t.Errorf("with the token: got %d; want 200 with metrics", code)
		}
		if m.MetricsURL != "" {
			t.Errorf("MetricsURL %q without -metrics-addr", m.MetricsURL)
		}
	})

	t.Run("dev mode on loopback", func(t *testing.T) {
		m := mustStart(t, "")
		if code, _ := get(t, m.URL+"/metrics", ""); code != http.StatusOK {
			t.Errorf("dev: got %d; want 200", code)
		}
	})
}
