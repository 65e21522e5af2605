"""Real headless Chromium publishes and plays through a redirect to another origin.

eu-1 is full (``server.maxViewers=1`` and one player), so it redirects every new
publish and play to eu-2. The page is on eu-1's origin; its ``fetch`` POSTs the
offer there, follows the 307 across origins (preflight and POST to eu-2), reads
the absolute session ``Location``, trickles its candidates with PATCH and ends
with DELETE, both on eu-2. The played video must arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.support.browser import screenshot
from tests.support.nodes import NodeProcess, running
from tests.support.peers import Peers
from tests.support.regions import region_node

PAGE_SCRIPT = """
async ([publishUrl, playUrl]) => {
  const steps = [];
  const gathered = (pc) => new Promise((done) => {
    const candidates = [];
    pc.onicecandidate = (e) => {
      if (e.candidate) candidates.push(e.candidate); else done(candidates);
    };
  });
  async function open(url, pc) {
    const candidates = gathered(pc);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const bare = offer.sdp.split("\\r\\n")
      .filter((l) => !l.startsWith("a=candidate:")).join("\\r\\n");
    const answer = await fetch(url, {method: "POST", body: bare,
                                     headers: {"Content-Type": "application/sdp"}});
    const location = answer.headers.get("Location");
    steps.push({url, status: answer.status, redirected: answer.redirected,
                finalUrl: answer.url, location});
    if (answer.status !== 201) {
      throw new Error(`POST ${url}: ${answer.status} ${await answer.text()}`);
    }
    await pc.setRemoteDescription({type: "answer", sdp: await answer.text()});
    const fragment = ["a=ice-ufrag:" + pc.localDescription.sdp.match(/a=ice-ufrag:(.*)/)[1],
                      "a=ice-pwd:" + pc.localDescription.sdp.match(/a=ice-pwd:(.*)/)[1],
                      "m=audio 9 RTP/AVP 0", "a=mid:0",
                      ...(await candidates).map((c) => "a=" + c.candidate),
                      "a=end-of-candidates"];
    const patched = await fetch(location, {
      method: "PATCH", body: fragment.join("\\r\\n") + "\\r\\n",
      headers: {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"}});
    steps.push({patch: location, status: patched.status});
    return location;
  }
  const canvas = document.createElement("canvas");
  canvas.width = 320; canvas.height = 240;
  const ctx = canvas.getContext("2d");
  let frame = 0;
  const timer = setInterval(() => { ctx.fillStyle = `hsl(${frame++ % 360},80%,50%)`;
                                    ctx.fillRect(0, 0, 320, 240); }, 33);
  const stream = canvas.captureStream(30);
  const publisher = new RTCPeerConnection({iceServers: []});
  stream.getTracks().forEach(
    (t) => publisher.addTransceiver(t, {direction: "sendonly", streams: [stream]}));
  const publishLocation = await open(publishUrl, publisher);
  await new Promise((r) => setTimeout(r, 1500));  // the stream is live in the registry
  const player = new RTCPeerConnection({iceServers: []});
  player.addTransceiver("video", {direction: "recvonly"});
  const playLocation = await open(playUrl, player);
  let frames = 0;
  for (let i = 0; i < 100 && frames < 10; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const stats = await player.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
    });
  }
  for (const location of [playLocation, publishLocation]) {
    const deleted = await fetch(location, {method: "DELETE"});
    steps.push({delete: location, status: deleted.status});
  }
  clearInterval(timer);
  player.close(); publisher.close();
  return {steps, frames};
}
"""


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[dict[str, NodeProcess]]:
    workdir: Path = tmp_path_factory.mktemp("browser")
    started = {
        "eu-1": region_node(
            workdir, "eu-1", "eu", module_postgres_url, **{"server.maxViewers": "1"}
        ),
        "eu-2": region_node(workdir, "eu-2", "eu", module_postgres_url),
    }
    with running(list(started.values())):
        yield started


async def test_a_page_publishes_and_plays_across_origins_through_the_redirect(
    nodes: dict[str, NodeProcess], peers: Peers, page: Page, artifacts: Path
) -> None:
    eu1, eu2 = nodes["eu-1"], nodes["eu-2"]
    await peers.publish(f"{eu1.url}/LiveApp/whip/filler")
    await peers.play(f"{eu1.url}/LiveApp/whep/filler")  # eu-1 is now at its one player
    await asyncio.sleep(1.5)  # heartbeats: both views see eu-1 full
    await page.goto(f"{eu1.url}/LiveApp/")
    result = await page.evaluate(
        PAGE_SCRIPT, [f"{eu1.url}/LiveApp/whip/page", f"{eu1.url}/LiveApp/whep/page"]
    )
    await screenshot(page, artifacts, "after-play")
    posted = [s for s in result["steps"] if "redirected" in s]
    assert [s["status"] for s in posted] == [201, 201], result
    assert all(s["redirected"] and s["finalUrl"].startswith(eu2.url) for s in posted), result
    assert all(s["location"].startswith(f"{eu2.url}/LiveApp/") for s in posted), result
    assert [s["status"] for s in result["steps"] if "patch" in s] == [204, 204], result
    assert [s["status"] for s in result["steps"] if "delete" in s] == [200, 200], result
    assert result["frames"] >= 10, result
