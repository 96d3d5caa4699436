# The release gate (SPEC §5.1 step 1): which evidence a version must bring to be registered.
# The registry verifies each piece cryptographically first (a signature that does not verify
# refuses the registration whatever this rule says); this rule decides what is *required*: what
# the operator's release-policy file requires (input.required) plus what this policy requires
# for every model ("*") or for the model's domain (data.fulcrum.release_required).
# input: {"model": {"name", "tenant", "domain"}, "version": {"label"}, "publisher": "ci",
#         "required": ["artifact_signature"],
#         "evidence": {"artifact_signature": true, "provenance": false, "sbom": true}}
package fulcrum.release

known := {"artifact_signature", "provenance", "sbom"}

required contains r if some r in input.required

# (Reading data.fulcrum.release_required by name: `data.fulcrum` as a whole would include every
# package's rules, this one too.)
required contains r if some r in object.get(data.fulcrum.release_required, "*", [])

required contains r if some r in object.get(data.fulcrum.release_required, input.model.domain, [])

deny contains sprintf("missing:%s", [r]) if {
	some r in required
	r in known
	not input.evidence[r]
}

deny contains sprintf("unknown_requirement:%s", [r]) if {
	some r in required
	not r in known
}

default allow := false

allow if count(deny) == 0

decision := {"allow": allow, "deny": deny}

test_nothing_required_allows if {
	allow with input as {"model": {"domain": "risk"}, "required": [], "evidence": {}}
		with data.fulcrum.release_required as {}
}

test_each_missing_piece_is_named if {
	deny == {"missing:provenance", "missing:sbom"} with input as {
		"model": {"domain": "risk"},
		"required": ["artifact_signature", "provenance", "sbom"],
		"evidence": {"artifact_signature": true, "provenance": false},
	}
		with data.fulcrum.release_required as {}
}

test_a_domain_can_require_more if {
	"missing:sbom" in deny with input as {"model": {"domain": "credit"}, "required": [], "evidence": {}}
		with data.fulcrum.release_required as {"credit": ["sbom"]}
	allow with input as {"model": {"domain": "risk"}, "required": [], "evidence": {}}
		with data.fulcrum.release_required as {"credit": ["sbom"]}
}
