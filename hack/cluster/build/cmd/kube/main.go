// Command kube is one binary holding every upstream program the local
// cluster runs, chosen by the name it is called as (a symlink such as
// bin/kube-apiserver) or by its first argument (kube kubectl get pods).
//
// One binary instead of nine: the Kubernetes, etcd, helm and metrics-server
// code they share is compiled and linked once, which roughly halves the cold
// build on a two-core machine. Each entry below does what the upstream main
// package of that program does; those packages cannot be imported.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as in kube-apiserver and kube-controller-manager

	etcdmain "go.etcd.io/etcd/server/v3/etcdmain"
	helmcmd "helm.sh/helm/v4/pkg/cmd"
	helmkube "helm.sh/helm/v4/pkg/kube"
	genericapiserver "k8s.io/apiserver/pkg/server"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
	metricsserver "sigs.k8s.io/metrics-server/cmd/metrics-server/app"
)

// programs maps each program name to its entry point. An entry point sees
// os.Args as the upstream binary would: os.Args[0] is the program name.
var programs = map[string]func() int{
	"kube-apiserver": func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int {
		return cli.Run(controllermanager.NewControllerManagerCommand())
	},
	"kube-scheduler": func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
	"kubelet": func() int {
		return cli.Run(kubelet.NewKubeletCommand(context.Background()))
	},
	"kube-proxy": func() int { return cli.Run(proxy.NewProxyCommand()) },
	"kubectl": func() int {
		_, _ = logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args))
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	},
	"etcd": func() int {
		etcdmain.Main(os.Args)
		return 0
	},
	"metrics-server": func() int {
		logs.InitLogs()
		defer logs.FlushLogs()
		cmd := metricsserver.NewMetricsServerCommand(genericapiserver.SetupSignalHandler())
		if err := cmd.Execute(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	},
	"helm": func() int {
		helmkube.ManagedFieldsManager = "helm"
		cmd, err := helmcmd.NewRootCmd(os.Stdout, os.Args[1:], helmcmd.SetupLogging)
		if err != nil {
			slog.Warn("command failed", slog.Any("error", err))
			return 1
		}
		if err := cmd.Execute(); err != nil {
			var cerr helmcmd.CommandError
			if errors.As(err, &cerr) {
				return cerr.ExitCode
			}
			return 1
		}
		return 0
	},
}

func usage(w io.Writer) {
	names := make([]string, 0, len(programs))
	for name := range programs {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "usage: kube PROGRAM [ARGS...], or call it through a symlink named PROGRAM\nprograms: %v\n", names)
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := programs[name]; !ok {
		if len(os.Args) < 2 {
			usage(os.Stderr)
			os.Exit(2)
		}
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	run, ok := programs[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "kube: unknown program %q\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(run())
}
