package volumes

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func ptr[T any](v T) *T { return &v }

func newManager(t *testing.T, inMemory bool, objs ...any) (*Manager, *fake.Clientset) {
	t.Helper()
	var ros []interface{}
	ros = append(ros, objs...)
	client := fake.NewClientset()
	for _, o := range ros {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			if _, err := client.CoreV1().ConfigMaps(o.Namespace).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case *corev1.Secret:
			if _, err := client.CoreV1().Secrets(o.Namespace).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := DefaultConfig()
	cfg.PodsDir = filepath.Join(t.TempDir(), "pods")
	cfg.Client = client
	cfg.SecretsInMemory = inMemory
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, client
}

func testPod(uid string, vols ...corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "ns1", UID: types.UID(uid),
			Labels:      map[string]string{"app": "web", "tier": "front\"end"},
			Annotations: map[string]string{"note": "hi"},
		},
		Spec: corev1.PodSpec{
			NodeName: "node-a",
			Volumes:  vols,
			Containers: []corev1.Container{{
				Name: "main",
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
				},
			}},
		},
	}
}

// readVolume returns path → content of every file visible through the
// volume's top-level names (following the symlinks), and their modes.
func readVolume(t *testing.T, dir string) (map[string]string, map[string]fs.FileMode) {
	t.Helper()
	content, modes := map[string]string{}, map[string]fs.FileMode{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		root := filepath.Join(dir, e.Name())
		real, err := filepath.EvalSymlinks(root)
		if err != nil {
			t.Fatal(err)
		}
		err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(real, p)
			name := filepath.Join(e.Name(), rel)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi, _ := d.Info()
			content[filepath.Clean(name)] = string(b)
			modes[filepath.Clean(name)] = fi.Mode().Perm()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return content, modes
}

func TestConfigMapAndSecretVolumes(t *testing.T) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns1"},
		Data:       map[string]string{"a": "alpha", "b": "beta"},
		BinaryData: map[string][]byte{"bin": {0, 1, 2}},
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns1"},
		Data:       map[string][]byte{"user": []byte("root"), "pass": []byte("s3cret")},
	}
	tests := []struct {
		name    string
		src     corev1.VolumeSource
		want    map[string]string
		modes   map[string]fs.FileMode
		wantErr string
	}{
		{
			name:  "configmap all keys default mode",
			src:   corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			want:  map[string]string{"a": "alpha", "b": "beta", "bin": "\x00\x01\x02"},
			modes: map[string]fs.FileMode{"a": 0o644, "b": 0o644, "bin": 0o644},
		},
		{
			name: "configmap items with modes and nested paths",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
				DefaultMode:          ptr(int32(0o600)),
				Items: []corev1.KeyToPath{
					{Key: "a", Path: "dir/sub/a.txt"},
					{Key: "b", Path: "b.conf", Mode: ptr(int32(0o755))},
				},
			}},
			want:  map[string]string{"dir/sub/a.txt": "alpha", "b.conf": "beta"},
			modes: map[string]fs.FileMode{"dir/sub/a.txt": 0o600, "b.conf": 0o755},
		},
		{
			name: "configmap missing key",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
				Items:                []corev1.KeyToPath{{Key: "nope", Path: "x"}},
			}},
			wantErr: `MountVolume.SetUp failed for volume "v" : configmap references non-existent config key: nope`,
		},
		{
			name: "configmap missing key optional",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
				Optional:             ptr(true),
				Items:                []corev1.KeyToPath{{Key: "nope", Path: "x"}, {Key: "a", Path: "y"}},
			}},
			want:  map[string]string{"y": "alpha"},
			modes: map[string]fs.FileMode{"y": 0o644},
		},
		{
			name:    "configmap not found",
			src:     corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}},
			wantErr: `MountVolume.SetUp failed for volume "v" : configmap "gone" not found`,
		},
		{
			name: "configmap not found optional",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Optional: ptr(true)}},
			want:  map[string]string{},
			modes: map[string]fs.FileMode{},
		},
		{
			name:  "secret all keys",
			src:   corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr(int32(0o400))}},
			want:  map[string]string{"user": "root", "pass": "s3cret"},
			modes: map[string]fs.FileMode{"user": 0o400, "pass": 0o400},
		},
		{
			name: "secret missing key",
			src: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec",
				Items: []corev1.KeyToPath{{Key: "token", Path: "t"}}}},
			wantErr: `MountVolume.SetUp failed for volume "v" : references non-existent secret key: token`,
		},
		{
			name:    "secret not found",
			src:     corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "nosuch"}},
			wantErr: `MountVolume.SetUp failed for volume "v" : secret "nosuch" not found`,
		},
		{
			name: "bad item path",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
				Items:                []corev1.KeyToPath{{Key: "a", Path: "../escape"}},
			}},
			wantErr: "must be relative",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newManager(t, false, cm, sec)
			pod := testPod("uid-1", corev1.Volume{Name: "v", VolumeSource: tt.src})
			paths, err := m.Setup(t.Context(), pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				var se *SetupError
				if !errors.As(err, &se) || se.Volume != "v" {
					t.Fatalf("got %#v, want a *SetupError for volume v", err)
				}
				if _, ok := paths["v"]; ok {
					t.Fatalf("failed volume has a path")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, modes := readVolume(t, paths["v"])
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got files %q, want %q", got, tt.want)
			}
			if !reflect.DeepEqual(modes, tt.modes) {
				t.Errorf("got modes %v, want %v", modes, tt.modes)
			}
			// Setup again with nothing changed rewrites nothing.
			before, _ := os.Readlink(filepath.Join(paths["v"], "..data"))
			if _, err := m.Setup(t.Context(), pod); err != nil {
				t.Fatal(err)
			}
			after, _ := os.Readlink(filepath.Join(paths["v"], "..data"))
			if before != after {
				t.Errorf("second Setup switched ..data from %s to %s", before, after)
			}
		})
	}
}

func TestRefreshSwitchesDataAtomically(t *testing.T) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns1"},
		Data:       map[string]string{"a": "one", "b": "keep", "gone": "soon"},
	}
	m, client := newManager(t, false, cm)
	pod := testPod("uid-2", corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}})
	paths, err := m.Setup(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	dir := paths["v"]
	oldTS, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(oldTS, "..") || oldTS == "..data" {
		t.Fatalf("..data points at %q, want a timestamped dir", oldTS)
	}
	for _, k := range []string{"a", "b", "gone"} {
		if target, err := os.Readlink(filepath.Join(dir, k)); err != nil || target != "..data/"+k {
			t.Fatalf("link %s → %q (%v), want ..data/%s", k, target, err, k)
		}
	}

	// Unchanged: no switch.
	if err := m.Refresh(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	if ts, _ := os.Readlink(filepath.Join(dir, "..data")); ts != oldTS {
		t.Fatalf("unchanged refresh switched ..data: %s → %s", oldTS, ts)
	}

	// Changed: a new dir, the old one removed, links stay.
	cm.Data = map[string]string{"a": "two", "b": "keep", "new": "n"}
	if _, err := client.CoreV1().ConfigMaps("ns1").Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	aInfoBefore, err := os.Lstat(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	newTS, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	if newTS == oldTS {
		t.Fatalf("..data still points at %s after a change", oldTS)
	}
	if _, err := os.Stat(filepath.Join(dir, oldTS)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old data dir %s still there (err %v)", oldTS, err)
	}
	aInfoAfter, err := os.Lstat(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(aInfoBefore, aInfoAfter) {
		t.Errorf("the symlink for key a was replaced; it should stay and follow ..data")
	}
	got, _ := readVolume(t, dir)
	want := map[string]string{"a": "two", "b": "keep", "new": "n"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link for the removed key is still there (err %v)", err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	wantNames := []string{newTS, "..data", "a", "b", "new"}
	sort.Strings(wantNames)
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("volume dir holds %v, want %v", names, wantNames)
	}

	// Refresh after Teardown recreates nothing.
	if err := m.Teardown(t.Context(), "uid-2"); err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.PodVolumesDir("uid-2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refresh after teardown recreated %s", m.PodVolumesDir("uid-2"))
	}
}

func TestDownwardAPIAndProjected(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns1"}, Data: map[string]string{"k": "v"}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns1"}, Data: map[string][]byte{"s": []byte("x")}}
	m, _ := newManager(t, false, cm, sec)
	items := []corev1.DownwardAPIVolumeFile{
		{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
		{Path: "ns", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
		{Path: "uid", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}},
		{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}, Mode: ptr(int32(0o600))},
		{Path: "cpu_limit", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "main", Resource: "limits.cpu"}},
		{Path: "cpu_request_m", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "main", Resource: "requests.cpu", Divisor: resource.MustParse("1m")}},
		{Path: "mem_limit_mi", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "main", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
		{Path: "mem_limit", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "main", Resource: "limits.memory"}},
	}
	pod := testPod("uid-3",
		corev1.Volume{Name: "dapi", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: items}}},
		corev1.Volume{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: ptr(int32(0o440)),
			Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Items: []corev1.KeyToPath{{Key: "s", Path: "secret/s"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: items[:1]}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}},
			},
		}}},
	)
	paths, err := m.Setup(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	got, modes := readVolume(t, paths["dapi"])
	want := map[string]string{
		"name": "web", "ns": "ns1", "uid": "uid-3",
		"labels":        "app=\"web\"\ntier=\"front\\\"end\"",
		"annotations":   "note=\"hi\"",
		"cpu_limit":     "2", // 1500m rounded up to whole cores
		"cpu_request_m": "250",
		"mem_limit_mi":  "64",
		"mem_limit":     "67108864",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("downwardAPI: got %q, want %q", got, want)
	}
	if modes["annotations"] != 0o600 || modes["name"] != 0o644 {
		t.Errorf("downwardAPI modes: got %v", modes)
	}
	got, modes = readVolume(t, paths["proj"])
	want = map[string]string{"k": "v", "secret/s": "x", "name": "web"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("projected: got %q, want %q", got, want)
	}
	if modes["k"] != 0o440 {
		t.Errorf("projected mode: got %o, want 440", modes["k"])
	}

	// A label change reaches the downwardAPI volume on Refresh.
	pod.Labels["app"] = "web2"
	if err := m.Refresh(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	got, _ = readVolume(t, paths["dapi"])
	if got["labels"] != "app=\"web2\"\ntier=\"front\\\"end\"" {
		t.Errorf("labels after refresh: got %q", got["labels"])
	}

	// A missing non-optional source fails the projected volume.
	bad := testPod("uid-4", corev1.Volume{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}},
	}}})
	if _, err := m.Setup(t.Context(), bad); err == nil || !strings.Contains(err.Error(), `secret "nope" not found`) {
		t.Errorf("got %v, want secret \"nope\" not found", err)
	}
}

func TestHostPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tests := []struct {
		name    string
		path    string
		typ     corev1.HostPathType
		wantErr string
		isDir   bool
		isFile  bool
	}{
		{name: "unset missing", path: filepath.Join(dir, "none")},
		{name: "dir or create", path: filepath.Join(dir, "new/sub"), typ: corev1.HostPathDirectoryOrCreate, isDir: true},
		{name: "dir or create on file", path: file, typ: corev1.HostPathDirectoryOrCreate, wantErr: "hostPath type check failed: " + file + " is not a directory, it's a File"},
		{name: "directory", path: dir, typ: corev1.HostPathDirectory},
		{name: "directory missing", path: filepath.Join(dir, "none"), typ: corev1.HostPathDirectory, wantErr: "hostPath " + filepath.Join(dir, "none") + " doesn't exist"},
		{name: "file or create", path: filepath.Join(dir, "newfile"), typ: corev1.HostPathFileOrCreate, isFile: true},
		{name: "file", path: file, typ: corev1.HostPathFile},
		{name: "file is dir", path: dir, typ: corev1.HostPathFile, wantErr: "is not a file, it's a Directory"},
		{name: "socket", path: sock, typ: corev1.HostPathSocket},
		{name: "socket is file", path: file, typ: corev1.HostPathSocket, wantErr: "is not a socket file, it's a File"},
		{name: "char device", path: "/dev/null", typ: corev1.HostPathCharDev},
		{name: "block device is char", path: "/dev/null", typ: corev1.HostPathBlockDev, wantErr: "/dev/null is not a block device, it's a CharDevice"},
		{name: "invalid type", path: dir, typ: "Weird", wantErr: "Weird is an invalid volume type"},
	}
	m, _ := newManager(t, false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod("uid-hp", corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: tt.path, Type: &tt.typ}}})
			paths, err := m.Setup(t.Context(), pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if paths["h"] != tt.path {
				t.Errorf("got path %q, want %q", paths["h"], tt.path)
			}
			fi, err := os.Stat(tt.path)
			if tt.isDir && (err != nil || !fi.IsDir()) {
				t.Errorf("%s not created as a directory (%v)", tt.path, err)
			}
			if tt.isFile && (err != nil || !fi.Mode().IsRegular()) {
				t.Errorf("%s not created as a file (%v)", tt.path, err)
			}
		})
	}
}

func TestEmptyDirAndTeardown(t *testing.T) {
	m, _ := newManager(t, false)
	pod := testPod("uid-5",
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "pvc", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}},
	)
	paths, err := m.Setup(t.Context(), pod)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported for the PVC", err)
	}
	want := filepath.Join(m.cfg.PodsDir, "uid-5", "volumes", PluginEmptyDir, "scratch")
	if paths["scratch"] != want {
		t.Fatalf("got %q, want %q", paths["scratch"], want)
	}
	fi, err := os.Stat(want)
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Fatalf("emptyDir: %v, mode %v; want a 0777 dir", err, fi)
	}
	if err := os.WriteFile(filepath.Join(want, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Setup again keeps the contents.
	if _, err := m.Setup(t.Context(), pod); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(want, "data")); err != nil || string(b) != "x" {
		t.Fatalf("emptyDir contents lost on second Setup: %q %v", b, err)
	}
	// A new Manager (an agent restart) tears down from the UID alone.
	m2, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := m2.Teardown(t.Context(), "uid-5"); err != nil {
			t.Fatalf("teardown %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(m.cfg.PodsDir, "uid-5")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod dir left behind: %v", err)
	}
	if err := m2.Teardown(t.Context(), "../x"); err == nil {
		t.Errorf("teardown accepted a UID with a slash")
	}
}

func TestContainerMounts(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns1"}, Data: map[string]string{"app.conf": "x"}}
	m, _ := newManager(t, false, cm)
	host := t.TempDir()
	pod := testPod("uid-6",
		corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}},
	)
	paths, err := m.Setup(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	data := paths["data"]
	if err := os.Symlink("/etc", filepath.Join(data, "evil")); err != nil {
		t.Fatal(err)
	}
	realCfg, err := filepath.EvalSymlinks(filepath.Join(paths["cfg"], "app.conf"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		vm      corev1.VolumeMount
		want    Mount
		wantErr string
	}{
		{name: "plain", vm: corev1.VolumeMount{Name: "data", MountPath: "/data"}, want: Mount{HostPath: data, ContainerPath: "/data"}},
		{name: "readOnly", vm: corev1.VolumeMount{Name: "host", MountPath: "/h", ReadOnly: true}, want: Mount{HostPath: host, ContainerPath: "/h", ReadOnly: true}},
		{name: "configmap is read-only", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/etc/app"}, want: Mount{HostPath: paths["cfg"], ContainerPath: "/etc/app", ReadOnly: true}},
		{name: "configmap key subPath", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"}, want: Mount{HostPath: realCfg, ContainerPath: "/etc/app.conf", ReadOnly: true}},
		{name: "subPath created", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "a/b"}, want: Mount{HostPath: filepath.Join(data, "a/b"), ContainerPath: "/x"}},
		{name: "subPathExpr", vm: corev1.VolumeMount{Name: "data", MountPath: "/y", SubPathExpr: "logs/$(POD)/$$x"}, want: Mount{HostPath: filepath.Join(data, "logs/web/$x"), ContainerPath: "/y"}},
		{name: "subPath escapes by symlink", vm: corev1.VolumeMount{Name: "data", MountPath: "/z", SubPath: "evil/newdir"}, wantErr: "outside the volume"},
		{name: "subPath dotdot", vm: corev1.VolumeMount{Name: "data", MountPath: "/z", SubPath: "a/../../x"}, wantErr: "must not contain '..'"},
		{name: "subPath absolute", vm: corev1.VolumeMount{Name: "data", MountPath: "/z", SubPath: "/etc"}, wantErr: "must not be an absolute path"},
		{name: "unknown volume", vm: corev1.VolumeMount{Name: "nope", MountPath: "/z"}, wantErr: "does not have"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &corev1.Container{Name: "main", VolumeMounts: []corev1.VolumeMount{tt.vm}}
			got, err := ContainerMounts(pod, c, paths, map[string]string{"POD": "web"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if fi, err := os.Stat(got[0].HostPath); err != nil {
				t.Errorf("host path %s: %v", got[0].HostPath, err)
			} else if tt.vm.Name == "data" && fi.Mode().Perm() != 0o777 {
				t.Errorf("subPath mode %o, want the volume's 0777", fi.Mode().Perm())
			}
		})
	}
	if _, err := os.Stat("/etc/newdir"); err == nil {
		t.Errorf("an escaping subPath created /etc/newdir")
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("tmpfs mounts need root")
	}
}

func isTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.TMPFS_MAGIC
}

func TestMemoryVolumesOnTmpfs(t *testing.T) {
	requireRoot(t)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns1"}, Data: map[string][]byte{"k": []byte("v")}}
	m, _ := newManager(t, true, sec)
	volDir := m.PodVolumesDir("uid-7")
	t.Cleanup(func() {
		// Never leave a mount behind, whatever failed.
		mps, _ := mountPoints(volDir)
		for _, mp := range mps {
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	})
	pod := testPod("uid-7",
		corev1.Volume{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("8Mi"))}}},
		corev1.Volume{Name: "podmem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		corev1.Volume{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
	)
	for i := 0; i < 2; i++ { // the second Setup must not stack mounts
		if _, err := m.Setup(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
	}
	paths, err := m.Setup(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int64{"mem": 8 << 20, "podmem": 64 << 20} {
		dir := paths[name]
		if !isTmpfs(t, dir) {
			t.Fatalf("%s is not a tmpfs", dir)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if got := int64(st.Blocks) * st.Bsize; got != size {
			t.Errorf("%s: tmpfs size %d, want %d", name, got, size)
		}
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o777 {
			t.Errorf("%s: mode %v (%v), want 0777", name, fi.Mode(), err)
		}
	}
	if !isTmpfs(t, paths["sec"]) {
		t.Errorf("secret volume %s is not on a tmpfs", paths["sec"])
	}
	mps, err := mountPoints(volDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mps) != 3 {
		t.Fatalf("got mounts %v, want exactly 3 (no stacking)", mps)
	}
	if got, _ := readVolume(t, paths["sec"]); got["k"] != "v" {
		t.Errorf("secret file: got %q", got)
	}
	m2, err := New(m.cfg) // after an agent restart
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Teardown(t.Context(), "uid-7"); err != nil {
		t.Fatal(err)
	}
	if mps, _ := mountPoints(volDir); len(mps) != 0 {
		t.Errorf("mounts left after teardown: %v", mps)
	}
	if _, err := os.Stat(volDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volumes dir left after teardown: %v", err)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134y`: `/x\y`, `/bad\9`: `/bad\9`}
	for in, want := range tests {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFSGroup: with the pod's fsGroup, an emptyDir and a secret volume
// belong to the group as the kubelet sets them (files readable by it,
// writable in the emptyDir; directories setgid), and setting up again
// neither rewrites the projection nor loses the setgid bit.
func TestFSGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown")
	}
	const gid = 2345
	m, _ := newManager(t, false, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "creds"}, Data: map[string][]byte{"pw": []byte("s3cret")}})
	pod := testPod("uid-fsgroup",
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds", DefaultMode: ptr(int32(0o400))}}})
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(gid))}
	check := func(round int) {
		t.Helper()
		paths, err := m.Setup(t.Context(), pod)
		if err != nil {
			t.Fatal(err)
		}
		owned := func(p string, want fs.FileMode) {
			t.Helper()
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if g, _ := groupOf(p); g != gid {
				t.Errorf("round %d: %s group %d, want %d", round, p, g, gid)
			}
			if got := fi.Mode() & (fs.ModePerm | fs.ModeSetgid); got != want {
				t.Errorf("round %d: %s mode %v, want %v", round, p, got, want)
			}
		}
		owned(paths["scratch"], 0o777|fs.ModeSetgid)
		owned(paths["creds"], 0o755|fs.ModeSetgid)
		owned(filepath.Join(paths["creds"], "..data")+"/", 0o755|fs.ModeSetgid)
		owned(filepath.Join(paths["creds"], "pw"), 0o440) // 0400 | the group's read
		if content, _ := readVolume(t, paths["creds"]); content["pw"] != "s3cret" {
			t.Errorf("round %d: secret volume holds %v", round, content)
		}
	}
	check(1)
	paths, _ := m.Setup(t.Context(), pod)
	data, err := os.Readlink(filepath.Join(paths["creds"], "..data"))
	if err != nil {
		t.Fatal(err)
	}
	check(2)
	if again, _ := os.Readlink(filepath.Join(paths["creds"], "..data")); again != data {
		t.Errorf("an unchanged secret was written again: ..data %s → %s", data, again)
	}
	// A file a container creates in the emptyDir inherits the group.
	f := filepath.Join(paths["scratch"], "made")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if g, err := groupOf(f); err != nil || g != gid {
		t.Errorf("new file in the emptyDir: group %d %v, want %d", g, err, gid)
	}
}
