"""Builds the package with the adminportal.v1 stubs generated from the repository's protos.

The generated modules (a top-level `adminportal` package) and the shared gRPC service config are
written into the build directory only, so nothing generated is ever committed.
"""

import importlib.resources
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
SERVICE_CONFIG = HERE.parent / "service-config.json"


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        from grpc_tools import protoc

        out = Path(self.build_lib)
        protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.glob("adminportal/v1/*.proto"))
        if not protos:
            raise SystemExit(f"no protos under {PROTO_ROOT}")
        well_known = importlib.resources.files("grpc_tools") / "_proto"
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc could not compile the adminportal.v1 protos")
        for package in (out / "adminportal", out / "adminportal" / "v1"):
            (package / "__init__.py").touch()
        shutil.copyfile(SERVICE_CONFIG, out / "portal_gateway_client" / "service-config.json")


setup(cmdclass={"build_py": BuildWithStubs})
