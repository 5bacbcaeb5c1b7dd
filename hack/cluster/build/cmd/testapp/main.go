// Command testapp is the workload of the local cluster's proof tests, one
// static binary with three jobs:
//
//	testapp [-listen :8080] [-burn 0.3]   serve HTTP; optionally burn CPU
//	testapp -get URL                      GET URL (a few tries), print the body
//	testapp -whoami                       ask the API server who this pod is
//
// The server answers GET / with "hello from <hostname>" and GET /healthz
// with "ok". -whoami uses the pod's service-account token and the
// KUBERNETES_SERVICE_HOST/PORT variables, as any in-cluster client does.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve HTTP on")
	burn := flag.Float64("burn", 0, "fraction of one CPU to keep busy (0 to 1); 0 burns nothing")
	burnFor := flag.Duration("burn-for", 15*time.Minute, "stop burning after this long, so a forgotten pod cannot heat the machine forever")
	get := flag.String("get", "", "GET this URL, print the body and exit")
	whoami := flag.Bool("whoami", false, "print this pod's user name as the API server sees it and exit")
	flag.Parse()

	switch {
	case *get != "":
		body, err := fetch(*get)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(body)
	case *whoami:
		user, err := whoAmI()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(user)
	default:
		serve(*listen, *burn, *burnFor)
	}
}

func serve(listen string, burn float64, burnFor time.Duration) {
	if burn > 0 {
		go burnCPU(burn, burnFor)
	}
	hostname, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", hostname)
	})
	server := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("testapp serving on %s (burn %.2f CPU)", listen, burn)
	log.Fatal(server.ListenAndServe())
}

// burnCPU keeps one goroutine busy for fraction of every 100ms window, until
// limit has passed.
func burnCPU(fraction float64, limit time.Duration) {
	const window = 100 * time.Millisecond
	busy := time.Duration(float64(window) * min(fraction, 1))
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		start := time.Now()
		for time.Since(start) < busy {
		}
		time.Sleep(window - busy)
	}
	log.Printf("burn limit of %s reached; no longer burning CPU", limit)
}

// fetch GETs url, trying at most 10 times one second apart (a Service's
// rules can lag its endpoints by a moment).
func fetch(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	var lastErr error
	for range 10 {
		resp, err := client.Get(url)
		if err == nil {
			body, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if readErr == nil && resp.StatusCode == http.StatusOK {
				return string(body), nil
			}
			err = fmt.Errorf("GET %s: status %d, read error %v", url, resp.StatusCode, readErr)
		}
		lastErr = err
		time.Sleep(time.Second)
	}
	return "", lastErr
}

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func whoAmI() (string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "", fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT are not set: not in a pod?")
	}
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return "", err
	}
	caPEM, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return "", err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return "", fmt.Errorf("no certificate in %s/ca.crt", serviceAccountDir)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
	}
	url := "https://" + net.JoinHostPort(host, port) + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	req, err := http.NewRequest(http.MethodPost, url,
		bytes.NewBufferString(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: status %d: %s", url, resp.StatusCode, body)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &review); err != nil {
		return "", err
	}
	return review.Status.UserInfo.Username, nil
}
