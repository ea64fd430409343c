<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="UTF-8"/>
  <xsl:template match="/rss/channel">
    <h1><xsl:value-of select="title"/></h1>
    <ul>
      <xsl:for-each select="item">
        <li><a href="{link}"><xsl:value-of select="title"/></a></li>
      </xsl:for-each>
    </ul>
  </xsl:template>
</xsl:stylesheet>
