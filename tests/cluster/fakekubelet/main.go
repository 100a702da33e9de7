// Command fakekubelet stands in for the kubelets of the local control plane, which has no
// container runtime: it registers one Node, binds every unscheduled pod to it, and reports
// each bound pod Running and Ready with an IP from a range we choose. The IPs are data only:
// nothing ever dials them. Pods being deleted are removed at once, as a kubelet would after
// their containers stopped, so ReplicaSets scale down without waiting for grace periods.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the control plane (required)")
	nodeName := flag.String("node-name", "tidescale-fake-node", "name of the Node to register")
	podCIDR := flag.String("pod-cidr", "10.244.0.0/16", "range the pod IPs are taken from (data only)")
	flag.Parse()
	if *kubeconfig == "" {
		log.Fatal("--kubeconfig is required")
	}
	prefix, err := netip.ParsePrefix(*podCIDR)
	if err != nil || !prefix.Addr().Is4() {
		log.Fatalf("--pod-cidr must be an IPv4 prefix: %q", *podCIDR)
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("reading kubeconfig: %v", err)
	}
	config.QPS, config.Burst = 100, 200
	client := kubernetes.NewForConfigOrDie(config)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	k := &kubelet{client: client, node: *nodeName, ips: newAllocator(prefix)}
	if err := k.registerNode(ctx); err != nil {
		log.Fatalf("registering node %s: %v", *nodeName, err)
	}
	k.run(ctx)
	log.Print("fakekubelet stopped")
	os.Exit(0)
}

type kubelet struct {
	client kubernetes.Interface
	node   string
	ips    *allocator
}

// registerNode creates the Node (or reuses one left by an earlier run) and reports it Ready
// with room for many pods.
func (k *kubelet) registerNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   k.node,
		Labels: map[string]string{"kubernetes.io/hostname": k.node, "type": "tidescale-fake"},
	}}
	created, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = k.client.CoreV1().Nodes().Get(ctx, k.node, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("1Ti"),
		corev1.ResourcePods:   resource.MustParse("10000"),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: k.ips.nodeIP().String()}},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "FakeKubeletReady",
			Message: "pods are reported by the stand-in kubelet", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.35.4-fake", OperatingSystem: "linux", Architecture: "amd64"},
	}
	_, err = k.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// run watches every pod and handles each change on one worker, retrying failed updates with
// backoff (conflicts are normal: the ReplicaSet controller writes the same pods).
func (k *kubelet) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(k.client, 10*time.Minute)
	pods := factory.Core().V1().Pods()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	_, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	if err != nil {
		log.Fatalf("pod informer: %v", err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced) {
		log.Fatal("pod informer did not sync")
	}
	log.Printf("fakekubelet ready: node %s", k.node)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			key, shutdown := queue.Get()
			if shutdown {
				return
			}
			err := k.sync(ctx, func(ns string) podLister { return pods.Lister().Pods(ns) }, key)
			if err != nil && queue.NumRequeues(key) < 20 {
				log.Printf("pod %s: %v (retrying)", key, err)
				queue.AddRateLimited(key)
			} else {
				if err != nil {
					log.Printf("pod %s: %v (giving up)", key, err)
				}
				queue.Forget(key)
			}
			queue.Done(key)
		}
	}()
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
}

// podLister reads pods of one namespace from the informer's cache.
type podLister interface {
	Get(name string) (*corev1.Pod, error)
}

// sync brings one pod one step along: delete it if it is being deleted, bind it if it is
// unscheduled, report it running if it is ours and not yet reported.
func (k *kubelet) sync(ctx context.Context, lister func(string) podLister, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := lister(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	podsAPI := k.client.CoreV1().Pods(namespace)
	switch {
	case pod.DeletionTimestamp != nil:
		zero := int64(0)
		uid := pod.UID
		err := podsAPI.Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	case pod.Spec.NodeName == "":
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.node},
		}
		err := podsAPI.Bind(ctx, binding, metav1.CreateOptions{})
		if apierrors.IsConflict(err) {
			return nil
		}
		return err
	case pod.Spec.NodeName == k.node && !reportedRunning(pod):
		running := pod.DeepCopy()
		k.markRunning(running)
		_, err := podsAPI.UpdateStatus(ctx, running, metav1.UpdateOptions{})
		return err
	}
	return nil
}

// reportedRunning is true once the pod carries the status markRunning writes.
func reportedRunning(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// markRunning writes what a kubelet reports for a pod whose containers all started and
// passed their readiness probes.
func (k *kubelet) markRunning(pod *corev1.Pod) {
	now := metav1.Now()
	ip := k.ips.podIP(pod.UID).String()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.HostIP = k.ips.nodeIP().String()
	pod.Status.HostIPs = []corev1.HostIP{{IP: pod.Status.HostIP}}
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	pod.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{
		corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
	} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
			Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now,
		})
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		started := true
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "fake://" + c.Image,
			ContainerID: fmt.Sprintf("fake://%s/%s", pod.UID, c.Name),
			Ready:       true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
}

// allocator hands out pod IPs from the configured range, one per pod UID, and keeps the
// range's last address for the Node.
type allocator struct {
	mu     sync.Mutex
	prefix netip.Prefix
	next   netip.Addr
	byUID  map[types.UID]netip.Addr
}

func newAllocator(prefix netip.Prefix) *allocator {
	prefix = prefix.Masked()
	return &allocator{prefix: prefix, next: prefix.Addr().Next(), byUID: map[types.UID]netip.Addr{}}
}

func (a *allocator) nodeIP() netip.Addr {
	last := a.prefix.Addr().As4()
	hostBits := 32 - a.prefix.Bits()
	for i := 3; i >= 0 && hostBits > 0; i-- {
		take := min(hostBits, 8)
		last[i] |= byte(1<<take - 1)
		hostBits -= take
	}
	last[3] &^= 1 // not the broadcast address
	return netip.AddrFrom4(last)
}

func (a *allocator) podIP(uid types.UID) netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byUID[uid]; ok {
		return ip
	}
	ip := a.next
	a.next = a.next.Next()
	if !a.prefix.Contains(a.next) || a.next == a.nodeIP() {
		// Wrapped: reuse from the start. The range is data only and far larger than any test.
		a.next = a.prefix.Addr().Next()
	}
	a.byUID[uid] = ip
	return ip
}
