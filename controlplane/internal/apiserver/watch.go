package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	pbstream "k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/watch"
)

func secondsDuration(n int64) time.Duration { return time.Duration(n) * time.Second }

// serveWatch streams the changes of res in ns as newline-separated JSON
// WatchEvents, flushed as they happen (a burst at once). Errors found
// before the stream starts are returned (and written as a Status by the
// caller); afterwards the stream ends with an ERROR event, at
// ?timeoutSeconds=, or when the client goes away. With a Table Accept header every event's object is a
// one-row Table, the first with column definitions.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, res *resource, ns string) error {
	q := r.URL.Query()
	if err := checkListQuery(q, true); err != nil {
		return err
	}
	opts, err := listOptions(q, res)
	if err != nil {
		return err
	}
	opts.Limit, opts.Continue = 0, ""
	opts.AllowBookmarks = queryBool(q, "allowWatchBookmarks")
	if v := q.Get("sendInitialEvents"); v != "" {
		b := queryBool(q, "sendInitialEvents")
		opts.SendInitialEvents = &b
	}
	as, protobuf := negotiate(r.Header.Get("Accept"))
	inc, err := parseIncludeObject(q.Get("includeObject"))
	if err != nil {
		return err
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("watch: the response writer cannot flush"))
	}
	ctx, cancel, err := requestContext(r)
	if err != nil {
		return err
	}
	defer cancel()
	wi, err := s.cfg.Store.Watch(ctx, res.reg, ns, opts)
	if err != nil {
		return err
	}
	defer wi.Stop()

	// JSON: one WatchEvent per line. Protobuf: length-delimited frames,
	// each a protobuf WatchEvent embedding the protobuf object, as
	// client-go's typed and metadata clients ask.
	lines := json.NewEncoder(w) // Encode ends each event with a newline
	encode := func(typ string, obj []byte) error {
		return lines.Encode(&metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: obj}})
	}
	contentType := "application/json"
	if protobuf {
		contentType = mediaProtobuf + ";stream=watch"
		// The frames hold raw protobuf WatchEvents, without the envelope
		// of the objects in them (client-go's streaming decoder is raw).
		frames := pbstream.LengthDelimitedFramer.NewFrameWriter(w)
		encode = func(typ string, obj []byte) error {
			b, err := (&metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: obj}}).Marshal()
			if err != nil {
				return err
			}
			_, err = frames.Write(b)
			return err
		}
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	first := true
	for {
		var ev watch.Event
		select {
		case <-ctx.Done():
			return nil
		case ev, ok = <-wi.ResultChan():
			if !ok {
				return nil
			}
		}
		obj, err := s.eventObject(res, ev, as, protobuf, inc, first)
		if err != nil {
			s.cfg.Logger.Error("apiserver: watch: encoding an event", "resource", res.gvr.String(), "err", err)
			return nil // the stream has begun: the client sees it end and re-watches
		}
		if ev.Type != watch.Error && ev.Type != watch.Bookmark {
			first = false
		}
		if err := encode(string(ev.Type), obj); err != nil {
			return nil // the client went away
		}
		// As kube-apiserver: flush when no other event waits, so that a
		// burst of events leaves in a few writes, not one write each.
		if len(wi.ResultChan()) == 0 {
			flusher.Flush()
		}
	}
}

// eventObject returns the encoding (JSON, or protobuf when asked) of an
// event's object: a Status for ERROR events, a Table row or the object's
// metadata when the client asked for them (as), else the object itself.
func (s *Server) eventObject(res *resource, ev watch.Event, as string, protobuf bool, inc includeObject, withHeaders bool) ([]byte, error) {
	obj := ev.Object
	switch {
	case ev.Type == watch.Error:
		st := obj.(*metav1.Status)
		st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	case as == asMeta || as == asMetaList:
		// A watch of metadata streams PartialObjectMetadata, whichever was asked.
		obj = partialMetadata(ev.Object)
	case as == asTable && ev.Type == watch.Bookmark:
		// As kube-apiserver: a table watch's bookmark is a Table without
		// rows that carries the revision.
		rv := ev.Object.(metav1.Object).GetResourceVersion()
		obj = &metav1.Table{
			TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: rv},
			Rows:     []metav1.TableRow{},
		}
	case as == asTable:
		t, err := table(res, []runtime.Object{ev.Object}, s.cfg.Now(), inc, withHeaders)
		if err != nil {
			return nil, err
		}
		obj = t
	}
	if protobuf {
		return registry.EncodeProtobuf(s.codecs.protobufEncoder, obj)
	}
	return json.Marshal(obj)
}
