"""module_utils/forge_fleet/webui_smoke.py: the first image's steps, checks and messages,
against recorded answers (Forge's shapes at the pin; the stand-in serves the same ones in
tests/unit/test_standin_webui.py)."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from forge_fleet import webui_smoke as smoke

SHOW = (
    "ActiveState=active\nSubState=running\nInvocationID=inv1\n"
    "ExecMainStartTimestampMonotonic=5000000\nLoadState=loaded\n"
)
MODELS = [
    {
        "title": "a-sd15.safetensors [0123456789]",
        "model_name": "a-sd15",
        "hash": "0123456789",
        "sha256": "0123456789" + "0" * 54,
        "filename": "/forge/models/Stable-diffusion/a-sd15.safetensors",
        "config": None,
    },
    {
        "title": "sub/b-xl.safetensors",
        "model_name": "sub_b-xl",
        "hash": None,
        "sha256": None,
        "filename": "/forge/models/Stable-diffusion/sub/b-xl.safetensors",
        "config": None,
    },
]
# Forge's exception handler at the pin (webui.py _handle_exception)
OOM = {
    "error": "OutOfMemoryError",
    "detail": "",
    "body": "",
    "message": "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity...",
}
OOM_JOURNAL = [
    "Loading Model: {...}",
    "ERROR:    Exception in ASGI application",
    "Traceback (most recent call last):",
    '  File "/forge/backend/attention.py", line 314, in attention_pytorch',
    "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 ...",
]


def png(width: int, height: int, colours: int = 2, filter_type: int = 1) -> bytes:
    rows = b""
    for y in range(height):
        line = bytes((x * 7 + y) % 256 if colours > 1 else 0 for x in range(width * 3))
        if filter_type == 1:  # Sub: each byte minus the one a pixel to the left
            line = bytes((line[i] - (line[i - 3] if i >= 3 else 0)) & 255 for i in range(len(line)))
        rows += bytes([filter_type]) + line

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        smoke.PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def image_answer(data: bytes, model: str = "a-sd15") -> bytes:
    info = json.dumps({"sd_model_name": model, "seed": 1})
    images = [base64.b64encode(data).decode()]
    return json.dumps({"images": images, "parameters": {}, "info": info}).encode()


class Forge:
    """Recorded answers per (method, path); every request kept."""

    def __init__(self, answers: dict | None = None):
        self.answers = {
            ("POST", "/login"): (200, b'{"success": true}'),
            ("GET", "/sdapi/v1/sd-models"): (200, json.dumps(MODELS).encode()),
            ("GET", "/sdapi/v1/options"): (200, b'{"sd_model_checkpoint": null}'),
            ("POST", "/sdapi/v1/txt2img"): (200, image_answer(png(64, 64))),
            **(answers or {}),
        }
        self.requests: list[dict] = []

    def __call__(self, port, method, path, *, body=None, headers=None, timeout=60.0):
        self.requests.append({"method": method, "path": path, "body": body, "headers": headers})
        return self.answers[(method, path)]

    def sent(self, path: str) -> dict:
        return next(r for r in self.requests if r["path"] == path)


class System:
    def __init__(self, journal_after=(), journal_before=("Startup time: 40.0s",)):
        self.calls = 0
        self.journal_before, self.journal_after = list(journal_before), list(journal_after)

    def __call__(self, argv):
        if argv[:2] == ["systemctl", "show"]:
            return 0, SHOW, ""
        self.calls += 1  # the journal: the start's lines, then with the request's lines
        lines = self.journal_before + (self.journal_after if self.calls > 1 else [])
        # journalctl -o json: one record per line
        records = [json.dumps({"__REALTIME_TIMESTAMP": "1000000", "MESSAGE": x}) for x in lines]
        return 0, "\n".join(records) + "\n", ""


def run(forge: Forge, system: System | None = None, **options):
    clock = iter([100.0, 103.25])
    settings = {"login": ("student", "pw"), "api_auth": ("api", "apipw"), **options}
    return smoke.smoke(
        7860,
        "forge-webui.service",
        request=forge,
        run=system or System(),
        clock=lambda: next(clock),
        now_usec=lambda: 65_000_000,
        sleep=lambda _: None,
        **settings,
    )


def test_a_good_host_returns_the_times_the_checkpoint_and_the_image_size():
    result = run(Forge())
    assert result == {
        "checkpoint": "a-sd15.safetensors [0123456789]",
        "model_used": "a-sd15",
        "width": 64,
        "height": 64,
        "steps": 1,
        "seed": 1,
        "generation_seconds": 3.25,
        "first_image_seconds": 60.0,  # 65 s on the monotonic clock, main process at 5 s
        "image_bytes": len(png(64, 64)),
        "invocation_id": "inv1",
    }


def test_logs_in_with_the_form_then_uses_basic_auth_and_saves_nothing():
    forge = Forge()
    run(forge)
    assert [r["path"] for r in forge.requests] == [
        "/login",
        "/sdapi/v1/sd-models",
        "/sdapi/v1/options",
        "/sdapi/v1/txt2img",
    ]
    assert forge.sent("/login")["body"] == b"username=student&password=pw"
    assert "Authorization" not in forge.sent("/login")["headers"]
    basic = "Basic " + base64.b64encode(b"api:apipw").decode()
    assert forge.sent("/sdapi/v1/txt2img")["headers"]["Authorization"] == basic
    sent = json.loads(forge.sent("/sdapi/v1/txt2img")["body"])
    assert sent["save_images"] is False and sent["send_images"] is True
    assert sent["override_settings"] == {"sd_model_checkpoint": "a-sd15.safetensors [0123456789]"}
    assert sent["override_settings_restore_afterwards"] is True
    assert (sent["steps"], sent["width"], sent["height"], sent["seed"]) == (1, 64, 64, 1)


def test_without_a_login_file_the_login_step_is_left_out():
    forge = Forge()
    run(forge, login=None)
    assert forge.requests[0]["path"] == "/sdapi/v1/sd-models"


def test_a_refused_student_login_fails_saying_what_forge_answered():
    forge = Forge({("POST", "/login"): (400, b'{"detail": "Incorrect credentials."}')})
    with pytest.raises(smoke.SmokeFailed) as failed:
        run(forge)
    assert "the student login does not work" in str(failed.value)
    assert '400 {"detail": "Incorrect credentials."}' in str(failed.value)
    assert len(forge.requests) == 1


def test_wrong_api_credentials_fail_naming_the_file():
    forge = Forge({("GET", "/sdapi/v1/sd-models"): (401, b'{"detail": "Not authenticated"}')})
    with pytest.raises(smoke.SmokeFailed, match="API credentials file does not match"):
        run(forge)


@pytest.mark.parametrize(
    ("wanted", "selected", "title"),
    [
        ("", "", "a-sd15.safetensors [0123456789]"),  # the first Forge lists
        ("", "sub/b-xl.safetensors", "sub/b-xl.safetensors"),  # what Forge has selected
        ("", "gone.safetensors", "a-sd15.safetensors [0123456789]"),
        ("b-xl.safetensors", "", "sub/b-xl.safetensors"),  # by file name
        ("b-xl", "", "sub/b-xl.safetensors"),
        ("a-sd15.safetensors", "", "a-sd15.safetensors [0123456789]"),  # title without hash
        ("sub_b-xl", "", "sub/b-xl.safetensors"),  # model name
    ],
)
def test_the_checkpoint_is_chosen_by_any_name_forge_lists(wanted, selected, title):
    assert smoke.choose_checkpoint(MODELS, wanted, selected)["title"] == title


def test_no_checkpoint_listed_fails_saying_how_to_add_one():
    with pytest.raises(smoke.SmokeFailed, match="Forge lists no checkpoint") as failed:
        run(Forge({("GET", "/sdapi/v1/sd-models"): (200, b"[]")}))
    assert "models_catalog" in str(failed.value)


def test_a_checkpoint_forge_does_not_list_fails_naming_the_listed_ones():
    with pytest.raises(smoke.SmokeFailed) as failed:
        run(Forge(), checkpoint="missing.safetensors")
    message = str(failed.value)
    assert "checkpoint missing.safetensors is not among" in message
    assert "a-sd15.safetensors [0123456789], sub/b-xl.safetensors" in message


def test_out_of_memory_fails_with_the_api_error_and_forges_journal_line():
    forge = Forge({("POST", "/sdapi/v1/txt2img"): (500, json.dumps(OOM).encode())})
    with pytest.raises(smoke.SmokeFailed) as failed:
        run(forge, System(journal_after=OOM_JOURNAL))
    message = str(failed.value)
    assert message.startswith(
        "Forge made no image: POST /sdapi/v1/txt2img answered 500: OutOfMemoryError: "
        "CUDA out of memory. Tried to allocate 2.50 GiB."
    )
    assert "Forge's journal (forge-webui.service): torch.cuda.OutOfMemoryError: CUDA out" in (
        message
    )
    assert "more GPU memory" in message  # what to do


def test_the_older_errors_key_of_forges_handler_is_read_too():
    body = json.dumps({"error": "RuntimeError", "detail": "", "body": "", "errors": "boom"})
    assert smoke.api_error(500, body.encode()) == "RuntimeError: boom"


def test_a_non_json_error_answer_is_quoted():
    assert smoke.api_error(500, b"Internal Server Error") == "500 Internal Server Error"


def test_an_exception_printed_before_the_request_is_not_blamed():
    # the start's own lines hold an old traceback; the request printed nothing
    system = System(journal_before=OOM_JOURNAL)
    forge = Forge({("POST", "/sdapi/v1/txt2img"): (500, json.dumps(OOM).encode())})
    with pytest.raises(smoke.SmokeFailed) as failed:
        run(forge, system)
    assert "Forge's journal" not in str(failed.value)


def test_journal_error_is_the_last_exception_line_even_indented():
    lines = [
        "Traceback (most recent call last):",
        "safetensors_rust.SafetensorError: Error while deserializing header",
        "During handling of the above exception, another exception occurred:",
        "    ValueError: Failed to recognize model type!",
        "---",
    ]
    assert smoke.journal_error(lines) == "ValueError: Failed to recognize model type!"
    assert smoke.journal_error(["Loading Model: {'a': 1}", "Model loaded in 3.2s"]) is None


def test_no_answer_within_the_timeout_says_to_raise_it():
    forge = Forge({("POST", "/sdapi/v1/txt2img"): (0, b"timed out")})
    with pytest.raises(smoke.SmokeFailed, match="no image within 3 s") as failed:
        run(forge, timeout=3)
    assert "webui_smoke_timeout" in str(failed.value)


def test_an_image_of_the_wrong_size_fails():
    forge = Forge({("POST", "/sdapi/v1/txt2img"): (200, image_answer(png(64, 32)))})
    with pytest.raises(smoke.SmokeFailed, match="a 64x32 image instead of the 64x64"):
        run(forge)


def test_a_one_colour_image_fails_as_nans():
    forge = Forge({("POST", "/sdapi/v1/txt2img"): (200, image_answer(png(64, 64, colours=1)))})
    with pytest.raises(smoke.SmokeFailed, match=r"one colour \(every pixel \(0, 0, 0\)\)"):
        run(forge)


def test_an_answer_without_images_or_with_a_broken_png_fails():
    empty = json.dumps({"images": [], "parameters": {}, "info": "{}"}).encode()
    with pytest.raises(smoke.SmokeFailed, match="without an image"):
        run(Forge({("POST", "/sdapi/v1/txt2img"): (200, empty)}))
    broken = image_answer(b"GIF89a...")
    with pytest.raises(smoke.SmokeFailed, match="not a readable PNG"):
        run(Forge({("POST", "/sdapi/v1/txt2img"): (200, broken)}))


@pytest.mark.parametrize("filter_type", [0, 1])
def test_png_pixels_undoes_the_row_filters(filter_type):
    pixels = smoke.png_pixels(png(8, 4, filter_type=filter_type))
    assert {bytes([0, 7, 14]), bytes([22, 29, 36])} <= pixels  # (0, 0) and (1, 1)
    assert len(pixels) == 32


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("student:Sec:ret\n", ("student", "Sec:ret")),  # split at the first ':'
        (" alice:a1 , bob:b2\n", ("alice", "a1")),
        ("\nstudent:pw", ("student", "pw")),
    ],
)
def test_the_login_file_is_read_in_forges_syntax(tmp_path, text, entry):
    path = tmp_path / "webui-auth"
    path.write_text(text)
    assert smoke.read_login(str(path)) == entry


def test_a_missing_credentials_file_fails_naming_it(tmp_path):
    with pytest.raises(smoke.SmokeFailed, match="cannot read the API credentials file"):
        smoke.read_api_auth(str(tmp_path / "nope"))


def test_an_api_not_mounted_yet_is_asked_again_until_it_answers():
    # Forge adds its API routes just after gradio serves the login: 404 for a moment
    answers = iter([(404, b'{"detail":"Not Found"}')] * 3)

    class Mounting(Forge):
        def __call__(self, port, method, path, **options):
            if path == "/sdapi/v1/sd-models":
                found = next(answers, None)
                if found:
                    return found
            return super().__call__(port, method, path, **options)

    clock = iter([0.0, 1.0, 2.0, 100.0, 103.25])
    result = smoke.smoke(
        7860,
        "forge-webui.service",
        login=("student", "pw"),
        api_auth=("api", "apipw"),
        request=Mounting(),
        run=System(),
        clock=lambda: next(clock),
        now_usec=lambda: 65_000_000,
        sleep=lambda _: None,
    )
    assert result["generation_seconds"] == 3.25


def test_an_api_that_stays_404_fails_saying_so():
    forge = Forge({("GET", "/sdapi/v1/sd-models"): (404, b'{"detail":"Not Found"}')})
    times = iter(float(t) for t in range(0, 1000, 30))
    with pytest.raises(smoke.SmokeFailed, match="sd-models with 404"):
        smoke.smoke(
            7860,
            "forge-webui.service",
            login=("student", "pw"),
            api_auth=("api", "apipw"),
            request=forge,
            run=System(),
            clock=lambda: next(times),
            now_usec=lambda: 65_000_000,
            sleep=lambda _: None,
        )
