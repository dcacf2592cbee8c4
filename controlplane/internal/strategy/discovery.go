package strategy

import (
	"slices"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits of an EndpointSlice.
const (
	maxSliceEndpoints = 1000
	maxSliceAddresses = 100
	maxSlicePorts     = 100
)

var supportedAddressTypes = sets.New(discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN)

func validateEndpointSlice(s *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	switch {
	case s.AddressType == "":
		errs = append(errs, field.Required(field.NewPath("addressType"), ""))
	case !supportedAddressTypes.Has(s.AddressType):
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType, sets.List(supportedAddressTypes)))
	}

	epPath := field.NewPath("endpoints")
	if len(s.Endpoints) > maxSliceEndpoints {
		errs = append(errs, field.TooMany(epPath, len(s.Endpoints), maxSliceEndpoints))
	} else {
		for i, ep := range s.Endpoints {
			p := epPath.Index(i)
			addrPath := p.Child("addresses")
			if len(ep.Addresses) == 0 {
				errs = append(errs, field.Required(addrPath, "must contain at least 1 address"))
			} else if len(ep.Addresses) > maxSliceAddresses {
				errs = append(errs, field.TooMany(addrPath, len(ep.Addresses), maxSliceAddresses))
			}
			for j, a := range ep.Addresses {
				errs = append(errs, validateSliceAddress(a, s.AddressType, addrPath.Index(j))...)
			}
			if ep.Hostname != nil {
				errs = append(errs, validateDNS1123Label(*ep.Hostname, p.Child("hostname"))...)
			}
			if ep.NodeName != nil {
				errs = append(errs, validateName(apimachineryvalidation.NameIsDNSSubdomain, *ep.NodeName, p.Child("nodeName"))...)
			}
			errs = append(errs, metav1validation.ValidateLabels(ep.DeprecatedTopology, p.Child("deprecatedTopology"))...)
		}
	}

	portsPath := field.NewPath("ports")
	if len(s.Ports) > maxSlicePorts {
		return append(errs, field.TooMany(portsPath, len(s.Ports), maxSlicePorts))
	}
	names := sets.New[string]()
	for i, port := range s.Ports {
		p := portsPath.Index(i)
		name := ""
		if port.Name != nil {
			name = *port.Name
		}
		if name != "" {
			errs = append(errs, validateDNS1123Label(name, p.Child("name"))...)
		}
		if names.Has(name) {
			errs = append(errs, field.Duplicate(p.Child("name"), name))
		}
		names.Insert(name)
		if port.Protocol == nil {
			errs = append(errs, field.Required(p.Child("protocol"), ""))
		} else if !supportedPortProtocols.Has(*port.Protocol) {
			errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol, sets.List(supportedPortProtocols)))
		}
		if port.Port != nil {
			errs = append(errs, validatePortNum(*port.Port, p.Child("port"))...)
		}
		if port.AppProtocol != nil {
			errs = append(errs, validateQualifiedName(*port.AppProtocol, p.Child("appProtocol"))...)
		}
	}
	return errs
}

// validateSliceAddress checks one endpoint address against the slice's
// address type.
func validateSliceAddress(a string, t discoveryv1.AddressType, fldPath *field.Path) field.ErrorList {
	switch t {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		if errs := validation.IsValidIP(fldPath, a); len(errs) > 0 {
			return errs
		}
		if v6 := isIPv6(a); v6 && t == discoveryv1.AddressTypeIPv4 {
			return field.ErrorList{field.Invalid(fldPath, a, "must be a valid IPv4 address")}
		} else if !v6 && t == discoveryv1.AddressTypeIPv6 {
			return field.ErrorList{field.Invalid(fldPath, a, "must be a valid IPv6 address")}
		}
		return validateNonSpecialIP(a, fldPath)
	case discoveryv1.AddressTypeFQDN:
		return validation.IsFullyQualifiedDomainName(fldPath, a)
	}
	return nil
}

// validateEndpointSliceUpdate keeps the address type.
func validateEndpointSliceUpdate(s, old *discoveryv1.EndpointSlice) field.ErrorList {
	errs := validateEndpointSlice(s)
	return append(errs, validateImmutable(s.AddressType, old.AddressType, field.NewPath("addressType"))...)
}

var validLeaseStrategies = []coordinationv1.CoordinatedLeaseStrategy{coordinationv1.OldestEmulationVersion}

func validateLease(l *coordinationv1.Lease) field.ErrorList {
	var errs field.ErrorList
	spec := &l.Spec
	specPath := field.NewPath("spec")
	if d := spec.LeaseDurationSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(specPath.Child("leaseDurationSeconds"), d, "must be greater than 0"))
	}
	if t := spec.LeaseTransitions; t != nil && *t < 0 {
		errs = append(errs, field.Invalid(specPath.Child("leaseTransitions"), t, isNegativeErrorMsg))
	}
	if s := spec.Strategy; s != nil {
		p := specPath.Child("strategy") // kube-apiserver reports spec.strategy.strategy
		if !strings.Contains(string(*s), "/") {
			// Unqualified strategies are Kubernetes'.
			if !slices.Contains(validLeaseStrategies, *s) {
				errs = append(errs, field.NotSupported(p.Child("strategy"), *s, validLeaseStrategies))
			}
		} else {
			errs = append(errs, validateQualifiedName(string(*s), p.Child("strategy"))...)
		}
	}
	if h := spec.PreferredHolder; h != nil && *h != "" && (spec.Strategy == nil || *spec.Strategy == "") {
		errs = append(errs, field.Forbidden(specPath.Child("preferredHolder"), "may only be specified if `strategy` is defined"))
	}
	return errs
}

func validateLeaseUpdate(l, _ *coordinationv1.Lease) field.ErrorList {
	return validateLease(l)
}
