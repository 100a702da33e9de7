"""A python-kubernetes 37 client of the tidescale adapter.

Usage: k8s_client.py SERVER CA CERT KEY [PATH SELECTOR]...
Runs typed discovery (ApisApi.get_api_versions -> GET /apis/, VersionApi.get_code -> GET
/version/) and a raw GET of every PATH with labelSelector=SELECTOR, then prints one JSON object:
{"groups": [...], "gitVersion": ..., "raw": [body, ...]}.
"""
import json
import sys

from kubernetes import client


def main():
    server, ca, cert, key, *rest = sys.argv[1:]
    cfg = client.Configuration()
    cfg.host = server
    cfg.ssl_ca_cert = ca
    cfg.cert_file = cert
    cfg.key_file = key
    api = client.ApiClient(cfg)

    groups = client.ApisApi(api).get_api_versions()
    version = client.VersionApi(api).get_code()

    raw = []
    for path, selector in zip(rest[0::2], rest[1::2]):
        req = api.param_serialize(
            "GET",
            path,
            query_params=[("labelSelector", selector)],
            header_params={"Accept": "application/json"},
        )
        resp = api.call_api(*req)
        resp.read()
        raw.append(api.response_deserialize(resp, {"200": "object"}).data)

    print(json.dumps({
        "groups": [g.name for g in groups.groups],
        "gitVersion": version.git_version,
        "raw": raw,
    }))


if __name__ == "__main__":
    main()
