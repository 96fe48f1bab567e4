//go:build manualshot

package lookup

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestManualShot(t *testing.T) {
	url, query, out := os.Getenv("SHOT_URL"), os.Getenv("SHOT_QUERY"), os.Getenv("SHOT_OUT")
	allocatorCtx, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000))
	defer cancel()
	ctx, cancel2 := chromedp.NewContext(allocatorCtx)
	defer cancel2()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Sleep(2*time.Second), chromedp.SetUploadFiles(chromedp.ID("file"), []string{query})); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('#results .result .score').length > 0 && [...document.querySelectorAll('#results img.thumb')].every(i => i.complete && i.naturalWidth > 0)`, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(out, shot, 0o644)
}
