"""Default policies per attestation type, kept byte-exact because ``x-ms-policy-hash`` hashes the text.

- ``SgxEnclave``: MAA's current documented SGX default (maa-policy.md D-3, policy-examples.md 2022-11).
- ``OpenEnclave``: the same text. MAA documents no separate current OE default; the 2021 shared-instance
  OE default (D-2) is the same rules without the configuration section, so D-3 keeps both types alike.
- ``Tpm``: the empty string, as MAA provisions it. ``compile_policy("")`` yields a policy that denies every
  attestation with a message saying no policy is set (MAA's behaviour for this case is undocumented).
- ``SevSnpVm``: MAA's shared-instance text, byte-exact (`SNP_DEFAULT`).
- ``TdxVm``: Affidavit's own default (MAA publishes none): permit every verified TD and issue its
  measurements under short names, in the style of the SGX default.
- ``AzureGuest``: Affidavit's own permit-all (MAA publishes no text; its shared instances' hash
  ``wm9mHlvT...`` will differ): the token carries every azurevm claim anyway.
"""

from __future__ import annotations

SGX_DEFAULT = (
    "version= 1.1;\n"
    "configurationrules{\n"
    '\t=> issueproperty(type="x-ms-sgx-tcbidentifier", value="azuredefault");\n'
    "};\n"
    "authorizationrules{\n"
    "\t=> permit();\n"
    "};\n"
    "issuancerules{\n"
    '\tc:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);\n'
    '\tc:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);\n'
    '\tc:[type=="x-ms-sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);\n'
    '\tc:[type=="x-ms-sgx-product-id"] => issue(type="product-id", value=c.value);\n'
    '\tc:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);\n'
    '\tc:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);\n'
    "};"
)

SGX_DEFAULT_2021 = (
    "version= 1.0;"
    "authorizationrules{=> permit();"
    "};"
    'issuancerules{c:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);'
    'c:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);'
    'c:[type=="x-ms-sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);'
    'c:[type=="x-ms-sgx-product-id"] => issue(type="product-id", value=c.value);'
    'c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);'
    'c:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);'
    "};"
)
"""D-2, the 2021 shared-instance default; its hash appears in a real MAA token (maa-policy.md §1)."""

SGX_DEFAULT_LEGACY = (
    "version= 1.0;"
    'authorizationrules{c:[type=="$is-debuggable"] => permit();'
    "};"
    'issuancerules{c:[type=="$is-debuggable"] => issue(type="is-debuggable", value=c.value);'
    'c:[type=="$sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);'
    'c:[type=="$sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);'
    'c:[type=="$product-id"] => issue(type="product-id", value=c.value);'
    'c:[type=="$svn"] => issue(type="svn", value=c.value);'
    'c:[type=="$tee"] => issue(type="tee", value=c.value);'
    "};"
)
"""D-1, the legacy default using the ``$``-prefixed claim names."""

TDX_DEFAULT = (
    "version= 1.0;\n"
    "authorizationrules{\n"
    "\t=> permit();\n"
    "};\n"
    "issuancerules{\n"
    '\tc:[type=="tdx_td_attributes_debug"] => issue(type="is-debuggable", value=c.value);\n'
    '\tc:[type=="tdx_mrtd"] => issue(type="tdx-mrtd", value=c.value);\n'
    '\tc:[type=="tdx_rtmr0"] => issue(type="tdx-rtmr0", value=c.value);\n'
    '\tc:[type=="tdx_rtmr1"] => issue(type="tdx-rtmr1", value=c.value);\n'
    '\tc:[type=="tdx_rtmr2"] => issue(type="tdx-rtmr2", value=c.value);\n'
    '\tc:[type=="tdx_rtmr3"] => issue(type="tdx-rtmr3", value=c.value);\n'
    '\tc:[type=="tdx_mrconfigid"] => issue(type="tdx-mrconfigid", value=c.value);\n'
    '\tc:[type=="tdx_mrowner"] => issue(type="tdx-mrowner", value=c.value);\n'
    '\tc:[type=="tdx_mrownerconfig"] => issue(type="tdx-mrownerconfig", value=c.value);\n'
    '\tc:[type=="tdx_tee_tcb_svn"] => issue(type="tdx-tee-tcb-svn", value=c.value);\n'
    '\tc:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);\n'
    "};"
)

SNP_DEFAULT = "version= 1.0;authorizationrules{=> permit();};"
"""``SevSnpVm``: the text whose hash, ``9NY0VnTQ-IiBriBplVUpFbczcDaEBUwsiFYAzHu_gco``, is the
``x-ms-policy-hash`` of real MAA SevSnpVm tokens (2022 spec example, 2025 sharedweu; sev-snp.md §5.7)."""

PERMIT_ALL = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"

DEFAULT_POLICIES: dict[str, str] = {
    "SgxEnclave": SGX_DEFAULT,
    "OpenEnclave": SGX_DEFAULT,
    "Tpm": "",
    "TdxVm": TDX_DEFAULT,
    "SevSnpVm": SNP_DEFAULT,
    "AzureGuest": PERMIT_ALL,
}
