package lookup

// Alert delivery by webhook, for applications that would rather be called than poll: every alert
// is POSTed to Config.AlertWebhook in seq order, at least once, and a key scope's watches' alerts
// to that scope's own webhook, if it has one. The seq of the last alert the
// receiver accepted is kept beside the watches, so a restart neither loses nor repeats what was
// delivered before it; a receiver that is down is retried with backoff until it answers 2xx. A
// receiver dedupes by seq (a delivery whose answer was lost is sent again).

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/reid-project/reid/config"
)

const (
	webhookBatch      = 100
	webhookTimeout    = 10 * time.Second
	webhookRetryFirst = 500 * time.Millisecond
	webhookRetryMax   = time.Minute
	webhookCursorFile = "webhook.cursor"
)

// WebhookDelivery is the body of a webhook POST.
type WebhookDelivery struct {
	Alerts []Alert `json:"alerts"`
}

// WebhookSignature is the X-Reid-Signature of body under secret: "sha256=" and the hex HMAC.
func WebhookSignature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// webhook is one receiver of alerts: the site's (lookup.alert_webhook), which takes every alert,
// or a key scope's, which takes the alerts that scope's keys see. Each has its own cursor, so a
// receiver that is down holds back no other.
type webhook struct {
	scope  string // "" for the site's
	url    string
	secret string
}

// webhooksOf lists the receivers config names; a server that forwards its watches to a watch
// server has none: the alerts are raised and delivered there.
func webhooksOf(config Config) []webhook {
	if config.watchesForwarded() {
		return nil
	}
	var hooks []webhook
	if config.AlertWebhook != "" {
		hooks = append(hooks, webhook{url: config.AlertWebhook, secret: config.AlertWebhookSecret})
	}
	for _, scope := range config.ScopedAPIKeys {
		if scope.AlertWebhook != "" {
			hooks = append(hooks, webhook{scope: scope.Name, url: scope.AlertWebhook, secret: scope.AlertWebhookSecret})
		}
	}
	return hooks
}

// cursorFile names the file that keeps the seq of the last alert the receiver accepted.
func (hook webhook) cursorFile() string {
	if hook.scope == "" {
		return webhookCursorFile
	}
	return "webhook-" + hook.scope + ".cursor"
}

// deliverAlerts sends alerts to one webhook until ctx ends. ServeListener runs one per webhook.
func (s *Server) deliverAlerts(ctx context.Context, list *watchList, hook webhook) {
	store, cursorFile := list.store, hook.cursorFile()
	logger := s.logger.With("url", config.MaskURLCredentials(hook.url))
	if hook.scope != "" {
		logger = logger.With("scope", hook.scope)
	}
	saveCursor := func(cursor int64) error {
		return store.Write(ctx, cursorFile, []byte(strconv.FormatInt(cursor, 10)))
	}
	cursor, err := readCursor(ctx, store, cursorFile)
	if errors.Is(err, os.ErrNotExist) {
		// A newly configured webhook starts with the alerts raised from now on, not with every
		// alert the server ever kept.
		cursor = list.latestSeq()
		err = saveCursor(cursor)
	}
	if err != nil {
		logger.Error("lookup: alert webhook: its cursor cannot be read or written; alerts are not delivered", "cursor", cursorFile, "store", store.Location(), "err", err)
		return
	}
	client := &http.Client{Timeout: webhookTimeout}
	retry := webhookRetryFirst
	failing, orphaned := false, false
	for {
		// A scope's webhook sends what the scope's keys see now: a reload (SetKeys) that takes a
		// camera from the scope takes its alerts from the webhook too, and one that removes the
		// scope holds its alerts back rather than send every camera's.
		var scope *cameraScope
		if hook.scope != "" {
			if scope = s.keys.Load().scopeNamed(hook.scope); scope == nil {
				if !orphaned {
					logger.Error("lookup: alert webhook: its key scope is no longer configured; nothing is sent until it is, or until a restart drops the webhook")
				}
				orphaned = true
				select {
				case <-ctx.Done():
					return
				case <-time.After(webhookRetryMax):
				}
				continue
			}
			orphaned = false
		}
		alerts, changed := list.alertsAfter(cursor, "", scope, webhookBatch)
		if len(alerts) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		err := postAlerts(ctx, client, hook, alerts)
		if err == nil {
			cursor = alerts[len(alerts)-1].Seq
			if err := saveCursor(cursor); err != nil {
				// Delivered, but a restart would send these again: the receiver dedupes by seq.
				logger.Error("lookup: alert webhook: saving the cursor", "err", err)
			}
			s.metrics.webhook.WithLabelValues("delivered", hook.scope).Add(float64(len(alerts)))
			if failing {
				logger.Info("lookup: alert webhook delivers again", "alerts", len(alerts))
			}
			retry, failing = webhookRetryFirst, false
			continue
		}
		if ctx.Err() != nil {
			return
		}
		s.metrics.webhook.WithLabelValues("failed", hook.scope).Inc()
		if !failing {
			logger.Warn("lookup: alert webhook failed; retrying with backoff, alerts wait", "err", err)
		}
		failing = true
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, webhookRetryMax)
	}
}

func postAlerts(ctx context.Context, client *http.Client, hook webhook, alerts []Alert) error {
	body, err := json.Marshal(WebhookDelivery{Alerts: alerts})
	if err != nil {
		return err
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("User-Agent", "reid-alerts")
	if hook.secret != "" {
		request.Header.Set("X-Reid-Signature", WebhookSignature(hook.secret, body))
	}
	response, err := client.Do(request)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	io.Copy(io.Discard, io.LimitReader(response.Body, 64<<10))
	if response.StatusCode < 200 || response.StatusCode > 299 {
		return fmt.Errorf("the receiver answered %s", response.Status)
	}
	return nil
}

func readCursor(ctx context.Context, store WatchStore, name string) (int64, error) {
	data, err := store.Read(ctx, name)
	if err != nil {
		return 0, err
	}
	cursor, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return cursor, nil
}
