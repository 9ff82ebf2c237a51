"""fcspec: Firecracker's API description (firecracker-api.yaml, Swagger 2.0) as a checker of
requests: which operations exist, and whether a body fits its schema. Firecracker rejects
unknown fields (serde deny_unknown_fields), so an object may hold only the properties its schema
defines. Written for this test suite; no code of Firecracker's."""
import os
import re

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_PATH = os.environ.get("FC_API_SPEC", os.path.join(HERE, "firecracker-api.yaml"))


class Spec:
    def __init__(self, path=SPEC_PATH):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.version = str(self.doc["info"]["version"])
        self.defs = self.doc.get("definitions", {})
        self.routes = []
        for template, ops in self.doc["paths"].items():
            names = re.findall(r"{([^}]+)}", template)
            rx = "^" + re.sub(r"{[^}]+}", "([^/]+)", template) + "$"
            self.routes.append((re.compile(rx), template, names, ops))

    def operation(self, method, path):
        """(template, path params, operation) or raises LookupError with the reason."""
        for rx, template, names, ops in self.routes:
            m = rx.match(path)
            if m:
                op = ops.get(method.lower())
                if op is None:
                    raise LookupError(f"{method} is not an operation of {template}")
                return template, dict(zip(names, m.groups())), op
        raise LookupError(f"no path {path} in the API")

    def body_schema(self, op):
        for p in op.get("parameters", []):
            if p.get("in") == "body":
                return p.get("schema"), bool(p.get("required"))
        return None, False

    def success_status(self, op):
        codes = [int(c) for c in op.get("responses", {}) if str(c).isdigit() and int(c) < 300]
        return min(codes) if codes else 204

    def resolve(self, schema):
        while "$ref" in schema:
            schema = self.defs[schema["$ref"].split("/")[-1]]
        return schema

    def check(self, schema, value, where="body"):
        """The list of ways value breaks schema (empty: it fits)."""
        s = self.resolve(schema)
        errs = []
        t = s.get("type")
        kinds = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        }
        if t and not kinds[t](value):
            return [f"{where}: expected {t}, got {type(value).__name__}"]
        if "enum" in s and value not in s["enum"]:
            errs.append(f"{where}: {value!r} is not one of {s['enum']}")
        if "minimum" in s and value < s["minimum"]:
            errs.append(f"{where}: {value} is below the minimum {s['minimum']}")
        if "maximum" in s and value > s["maximum"]:
            errs.append(f"{where}: {value} is above the maximum {s['maximum']}")
        if t == "object" or "properties" in s:
            props = s.get("properties", {})
            for k in s.get("required", []):
                if k not in value:
                    errs.append(f"{where}: required field {k!r} is missing")
            for k, v in value.items():
                if k not in props:
                    errs.append(f"{where}: field {k!r} is not defined by the API")
                elif props[k].get("readOnly"):
                    errs.append(f"{where}: field {k!r} is read-only")
                else:
                    errs.extend(self.check(props[k], v, f"{where}.{k}"))
        if t == "array" and "items" in s:
            for i, v in enumerate(value):
                errs.extend(self.check(s["items"], v, f"{where}[{i}]"))
        return errs
