"""Article pages and a press-release list, written in the style of real news sites.

Each page wraps its article in what real sites put around it: a navigation bar, a cookie
banner, share buttons, a related-stories box (sometimes inside the article element), a
newsletter sign-up, comments, sidebar widgets and a footer. ``BOILERPLATE`` lists phrases
that appear only in those parts, so a test can assert that none reaches extracted text.
Used by tests/test_article.py, tests/test_scrape.py and benchmarks/bench_article.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

DATA = Path(__file__).parent / "data"

# Phrases that appear only around the article, never in its body.
BOILERPLATE = (
    "partners use cookies",
    "Manage preferences",
    "Early Bird Brief",
    "Lockheed delays hypersonic glide test",
    "Army picks new carbine supplier",
    "Pentagon budget request stalls",
    "All rights reserved",
    "Your email address will not be published",
    "Share on Facebook",
    "Podcasts",
    "Most read",
    "Opening hours of the press office",
    "Accessibility statement",
    "Previous article",
)

_COOKIE_BANNER = """
<div id="cookie-law-info-bar" class="cookie-banner" role="dialog">
  <p>We and our 843 partners use cookies to store and access information on your device
  for personalised ads and content, ad and content measurement, audience insights and
  product development.</p>
  <button>Accept all</button> <button>Manage preferences</button>
</div>"""

_NAV = """
<header class="site-header">
  <a class="logo" href="/">Defense Daily Wire</a>
  <nav class="main-nav" aria-label="Main">
    <ul>
      <li><a href="/air/">Air</a></li><li><a href="/land/">Land</a></li>
      <li><a href="/naval/">Naval</a></li><li><a href="/space/">Space</a></li>
      <li><a href="/cyber/">Cyber</a></li><li><a href="/opinion/">Opinion</a></li>
      <li><a href="/podcasts/">Podcasts</a></li><li><a href="/subscribe/">Subscribe</a></li>
    </ul>
  </nav>
</header>"""

_RELATED = """
<aside class="related-stories">
  <h3>Related</h3>
  <ul>
    <li><a href="/air/2026/11/10/lockheed-delays-hypersonic-test/">Lockheed delays hypersonic
      glide test after telemetry fault</a></li>
    <li><a href="/land/2026/11/09/army-carbine/">Army picks new carbine supplier in
      surprise decision</a></li>
  </ul>
</aside>"""

_NEWSLETTER = """
<div class="newsletter-signup">
  <h4>Get the Early Bird Brief</h4>
  <p>The most comprehensive roundup of military news, every morning.</p>
  <form><input type="email" placeholder="Email address"><button>Sign up</button></form>
</div>"""

_SHARE = """
<div class="share-buttons"><a href="#">Share on Facebook</a> <a href="#">Share on X</a>
<a href="#">Share on LinkedIn</a> <a href="#">Email this story</a></div>"""

_SIDEBAR = """
<aside id="secondary" class="widget-area">
  <section class="widget"><h2 class="widget-title">Most read</h2>
    <ol>
      <li><a href="/congress/2026/11/pentagon-budget/">Pentagon budget request stalls in
        Senate committee</a></li>
      <li><a href="/naval/2026/11/frigate/">Navy frigate programme slips another year</a></li>
    </ol>
  </section>
  <section class="widget"><h2 class="widget-title">Tags</h2>
    <a href="/tag/nato/">NATO</a> <a href="/tag/missiles/">Missiles</a></section>
</aside>"""

_COMMENTS = """
<div id="comments" class="comments-area">
  <div id="respond" class="comment-respond">
    <h3 id="reply-title">Leave a Reply <small><a href="#respond">Cancel reply</a></small></h3>
    <form class="comment-form"><p class="comment-notes">Your email address will not be
      published. Required fields are marked *</p>
      <textarea name="comment"></textarea><input type="submit" value="Post Comment"></form>
  </div>
</div>"""

_FOOTER = """
<footer class="site-footer">
  <nav><a href="/about/">About us</a> <a href="/contact/">Contact us</a>
  <a href="/privacy/">Privacy policy</a> <a href="/terms/">Terms of use</a>
  <a href="/accessibility/">Accessibility statement</a></nav>
  <p>&copy; 2026 Daily Wire Media Group. All rights reserved.</p>
</footer>"""

_SCRIPTS = """
<script>window.dataLayer=window.dataLayer||[];dataLayer.push({"page":"article"});</script>
<script type="application/ld+json">{"@type":"NewsArticle","publisher":"Daily Wire"}</script>"""


@dataclass(frozen=True)
class Article:
    """A news article: what a reader would call its text."""

    headline: str
    paragraphs: tuple[str, ...]

    @property
    def teaser(self) -> str:
        """The first sentence, cut off the way feeds cut teasers."""
        return self.paragraphs[0].split(". ")[0] + " […]"


def seed_article() -> Article:
    """The project's sample article (it names F-35 only deep in its body)."""
    text = (DATA / "seed-article.txt").read_text(encoding="utf-8")
    headline, _, rest = text.partition("\n")
    return Article(headline.strip(), tuple(p.strip() for p in rest.split("\n") if p.strip()))


def radar_article() -> Article:
    """A second article; "Giraffe 1X" and "Saab" appear only after its first paragraph."""
    return Article(
        "Baltic states sign joint air defence radar purchase",
        (
            "Estonia, Latvia and Lithuania signed a joint purchase of mobile air defence "
            "radars on Tuesday, the first common procurement of its kind among the three "
            "countries since they joined the alliance in 2004.",
            "The contract, worth about 120 million euros, covers eighteen Giraffe 1X "
            "radars made by Saab, with deliveries starting in the second half of 2027. "
            "Officials said the systems would be integrated with existing short-range "
            "missile batteries and with the regional air surveillance network.",
            "Defence ministers from the three countries said at a press conference in "
            "Riga that common procurement shortens delivery times and lowers training "
            "costs, because crews from all three armies can be trained in one place.",
            "The purchase follows a series of airspace violations by drones along the "
            "eastern border this year. Lithuania's defence minister said the radars "
            "would close gaps in low-altitude coverage that the existing fixed sensors "
            "cannot see, especially over forested terrain.",
            "Analysts noted that the deal leaves open the question of who will pay for "
            "long-term maintenance. A spokesman for the Latvian ministry said a separate "
            "support agreement would be negotiated in the spring.",
        ),
    )


def _body(article: Article) -> str:
    return "\n".join(f"<p>{escape(p)}</p>" for p in article.paragraphs)


def news_site_page(article: Article) -> str:
    """A modern news site: semantic HTML5, a related box inside the article element."""
    half = len(article.paragraphs) // 2
    first = Article(article.headline, article.paragraphs[:half])
    second = Article(article.headline, article.paragraphs[half:])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(article.headline)} | Defense Daily Wire</title>
<meta property="og:title" content="{escape(article.headline)}">{_SCRIPTS}
</head><body>{_COOKIE_BANNER}{_NAV}
<main id="main">
  <article class="story">
    <header><h1 class="headline">{escape(article.headline)}</h1>
      <div class="byline">By <a href="/author/jane-doe/">Jane Doe</a> &middot;
      <time datetime="2026-11-12T09:30:00Z">Nov 12, 2026</time></div></header>
    {_SHARE}
    <div class="article-body">
      {_body(first)}
      {_RELATED}
      {_body(second)}
    </div>
    {_NEWSLETTER}
  </article>
</main>{_SIDEBAR}{_FOOTER}</body></html>"""


def wordpress_page(article: Article) -> str:
    """A WordPress theme: entry-content, Jetpack related posts, comments, widgets."""
    return f"""<!DOCTYPE html>
<html lang="en-US"><head><meta charset="UTF-8">
<title>{escape(article.headline)} - BulgarianMilitary.com</title>{_SCRIPTS}
<style>.cookie-banner{{position:fixed;bottom:0}}</style></head>
<body class="post-template-default single single-post">
<div id="page" class="site">{_NAV}
<div id="content" class="site-content"><div id="primary" class="content-area">
<main id="main" class="site-main">
<article id="post-1234" class="post-1234 post type-post status-publish">
  <header class="entry-header"><h1 class="entry-title">{escape(article.headline)}</h1>
  <div class="entry-meta"><span class="posted-on">Posted on
    <time class="entry-date published" datetime="2026-11-12T09:30:00+02:00">12
    November 2026</time></span></div></header>
  <div class="entry-content">
    {_body(article)}
    {_SHARE}
    <div id="jp-relatedposts" class="jp-relatedposts"><h3 class="jp-relatedposts-headline">
      Related</h3>{_RELATED}</div>
  </div>
  <nav class="navigation post-navigation"><a href="/prev/" rel="prev">Previous article</a>
    <a href="/next/" rel="next">Next article</a></nav>
</article>{_COMMENTS}
</main></div>{_SIDEBAR}</div>{_FOOTER}</div>{_COOKIE_BANNER}</body></html>"""


def ministry_page(article: Article) -> str:
    """A ministry's press release: Bootstrap grid, breadcrumb, side menu, contact footer."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(article.headline)}</title>
</head><body>{_COOKIE_BANNER}
<div class="container">
  <ol class="breadcrumb"><li><a href="/">Home</a></li><li><a href="/press/">Press</a></li>
    <li class="active">Press release</li></ol>
  <div class="row">
    <div class="col-md-3"><ul class="side-menu"><li><a href="/press/">Press releases</a></li>
      <li><a href="/speeches/">Speeches</a></li><li><a href="/podcasts/">Podcasts</a></li>
      <li><a href="/contacts/">Opening hours of the press office</a></li></ul></div>
    <div class="col-md-9">
      <h1>{escape(article.headline)}</h1>
      <div class="date">12.11.2026</div>
      <div class="field field--name-body">{_body(article)}</div>
      <div class="toolbar"><a href="#" onclick="print()">Print</a>{_SHARE}</div>
    </div>
  </div>
</div>{_FOOTER}</body></html>"""


def forum_page(article: Article) -> str:
    """An old CMS: the text in <div>s with <br> breaks, beside a reader forum.

    The forum's posts are long prose too, and both trafilatura and readability-lxml take
    them for part of the article: this is the page for ``full_text: {select: ...}``.
    """
    body = "<br><br>\n".join(escape(p) for p in article.paragraphs)
    posts = "".join(
        f'<div class="post"><div class="msg">{FORUM_POST.format(n=n)}</div></div>'
        for n in range(12)
    )
    return f"""<html><head><title>{escape(article.headline)}</title></head><body>
{_NAV}<div class="hdl">{escape(article.headline)}</div>
<div class="story-text">{body}</div>
<div class="board"><h3>Reader forum</h3>{posts}</div>{_FOOTER}</body></html>"""


FORUM_POST = (
    "Reader post {n}: I have followed the regional procurement debates for years and in "
    "my view the ministries keep buying equipment without a plan for spare parts, training "
    "and maintenance, which is what happened with the coastal radars and the helicopters."
)


PAGE_STYLES = {
    "news-site": news_site_page,
    "wordpress": wordpress_page,
    "ministry": ministry_page,
}


@dataclass(frozen=True)
class Release:
    title: str
    path: str  # relative link, as press pages write them
    date_text: str  # as shown to readers
    datetime_attr: str | None  # the <time datetime> attribute, when the page has one
    summary: str


def press_releases() -> list[Release]:
    return [
        Release(
            "Minister signs radar procurement agreement with Baltic partners",
            "/press/2026/11/radar-agreement",
            "12 November 2026",
            "2026-11-12T10:00:00+01:00",
            "The agreement covers eighteen mobile radars for the three Baltic states.",
        ),
        Release(
            "Statement on the F-35 training detachment",
            "/press/2026/11/f35-detachment",
            "10 November 2026",
            None,
            "A training detachment will deploy to the northern air base next month.",
        ),
        Release(
            "Call for tenders: maintenance of coastal patrol vessels",
            "press/2026/11/tender-patrol-vessels?lang=en",
            "November 3, 2026",
            None,
            "Tenders are invited for five years of maintenance of four patrol vessels.",
        ),
    ]


def press_list_page(releases: list[Release]) -> str:
    """A ministry press room: no feed, a list of releases among menus and a footer."""
    items = []
    for release in releases:
        when = (
            f'<time datetime="{release.datetime_attr}">{escape(release.date_text)}</time>'
            if release.datetime_attr
            else f'<span class="date">{escape(release.date_text)}</span>'
        )
        items.append(
            f"""<div class="release">
  <h2><a href="{escape(release.path)}">{escape(release.title)}</a></h2>
  <div class="meta">{when}</div>
  <p class="teaser">{escape(release.summary)}</p>
</div>"""
        )
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Press releases - Ministry of Defence</title></head><body>{_COOKIE_BANNER}{_NAV}
<div class="container"><h1>Press releases</h1>
<div class="release-list">{"".join(items)}</div>
<ul class="pagination"><li><a href="?page=2">Next page</a></li>
  <li><a href="javascript:void(0)">Print</a></li></ul>
</div>{_FOOTER}</body></html>"""
